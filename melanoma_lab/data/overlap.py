"""Images a model was developed on, found again in another dataset: a training run's fingerprints, and the
matching of an external evaluation's images against them.

Every training run logs ``data/training_fingerprints.csv``: one row per original image it trained on (context
``training``) or chose its epoch and alert threshold on (``validation``), with ``path``, ``sha256`` and the perceptual
hash ``phash`` (view 0 of :func:`melanoma_lab.data.dihedral.view_hashes`). An image of another dataset overlaps
those when it is byte-identical to one (match ``identical``), a near-copy within the run's
``audit.near_duplicate_distance`` bits (``near``), or a rotated or flipped copy, found at a rotated view of its hash
and confirmed by the pixels like the audit's (``rotated``). A rotated-hash match whose training file is no longer
there to compare is listed as ``rotated_unconfirmed`` and not counted (nothing confirms it).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from melanoma_lab.data.dihedral import confirmed, correlation, file_view_hashes, identity_hashes, packed, pairs

FINGERPRINTS = "data/training_fingerprints.csv"  # the artifact every training run logs
FINGERPRINT_COLUMNS = ["path", "context", "sha256", "phash"]
MATCH_COLUMNS = ["path", "training_path", "context", "match", "view", "correlation"]
COUNTED = ("identical", "near", "rotated")  # matches that make an image a copy of a development image


def training_fingerprints(parts: dict[str, pd.DataFrame | None]) -> pd.DataFrame:
    """The fingerprints of the original images of ``parts`` (context -> files, e.g. ``training``, ``validation``;
    generated images are left out: their parents are there)."""
    tables = [files.loc[files["source"] == "original", ["path", "sha256"]].assign(context=context)
              for context, files in parts.items() if files is not None and len(files)]
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["path", "sha256", "context"])
    table["phash"] = identity_hashes(table["path"].tolist(), table["sha256"].tolist())
    return table[FINGERPRINT_COLUMNS]


def training_matches(files: pd.DataFrame, fingerprints: pd.DataFrame, max_distance: int) -> pd.DataFrame:
    """Every (image of ``files``, development image of ``fingerprints``) pair that matches (``MATCH_COLUMNS``;
    ``view``: the view of the image that matched the training image's hash, ``correlation``: the pixels' check of
    a rotated match, empty for the others)."""
    rows = []
    by_bytes = fingerprints.groupby("sha256")
    for path, sha in zip(files["path"], files["sha256"]):
        if sha in by_bytes.groups:
            rows += [{"path": path, "training_path": train, "context": context, "match": "identical", "view": 0,
                      "correlation": None}
                     for train, context in zip(by_bytes.get_group(sha)["path"], by_bytes.get_group(sha)["context"])]
    reference = fingerprints[fingerprints["phash"].fillna("").astype(str) != ""].reset_index(drop=True)
    with ThreadPoolExecutor() as pool:
        hashed = list(pool.map(file_view_hashes, files["path"]))
    readable = [i for i, found in enumerate(hashed) if found]
    if readable and len(reference):
        query = np.array([packed(hashed[i]) for i in readable], dtype=np.uint64)
        for q, j, k, _ in pairs(query, packed(reference["phash"].astype(str).tolist()), max_distance):
            row = files.iloc[readable[q]]
            train = reference.iloc[j]
            if row["sha256"] == train["sha256"]:
                continue  # listed as identical
            score = float("nan") if k == 0 else correlation(row["path"], train["path"], k)
            if k and not math.isnan(score) and not confirmed(score):
                continue  # a different lesion whose hash matched at a rotated view
            match = "near" if k == 0 else "rotated_unconfirmed" if math.isnan(score) else "rotated"
            rows.append({"path": row["path"], "training_path": train["path"], "context": train["context"],
                         "match": match, "view": k, "correlation": None if k == 0 else round(score, 3)})
    return pd.DataFrame(rows, columns=MATCH_COLUMNS)


def overlapping(files: pd.DataFrame, matches: pd.DataFrame) -> np.ndarray:
    """Per row of ``files``: whether it is a copy of a development image (a counted match)."""
    return files["path"].isin(matches.loc[matches["match"].isin(COUNTED), "path"]).to_numpy()
