"""One honest Test set: Test images with a copy in Train, clean Test metrics, and Test images not scored.

A Test image is *contaminated* when a Train image is byte-identical to it or a perceptual near-copy (pHash
within ``audit.near_duplicate_distance`` bits, or a rotated or flipped copy confirmed by the pixels:
:mod:`melanoma_lab.data.dihedral`; joined transitively like the split's content groups), or when a
Train image shows the same lesion (the source's ``group_id``). The audit lists every such (Test, Train) pair as
``test_train_twins``. By default (``audit.test_contamination=exclude``)
those Train copies are kept out of training and validation, whatever ``audit.conflict_policy`` says;
``keep`` reproduces the seed notebooks, with a warning. Either way each run also reports its Test metrics on
the *clean* Test images (no Train twin) as ``test_clean_<metric>`` with ``test_clean_images``, and lists the
Test images it did not score, with the reason, in ``evaluation/test_unscored.csv``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from melanoma_lab.data.catalog import Catalog, SPLIT_FOLDERS
from melanoma_lab.data.split import content_groups, split_groups

log = logging.getLogger(__name__)

TWIN_COLUMN = "train_twin"  # per image: its content is on both sides of Train/Test (a Test image with a Train twin)
UNSCORED_COLUMNS = ["path", "reason"]


def train_test_twins(files: pd.DataFrame, near_duplicate_groups: list[list[dict]]) -> list[dict]:
    """Every (Test image, Train image) pair of one split group: ``{"test", "train", "match"}`` with match
    ``identical`` (same bytes), ``near`` (perceptual near-copy, rotated or flipped copies included) or ``same_lesion`` (same ``group_id``)."""
    grouped = files.assign(group=split_groups(files, near_duplicate_groups),
                           content=content_groups(files, near_duplicate_groups))
    pairs = []
    for _, members in grouped.groupby("group", sort=False):
        if members["split"].nunique() < 2:
            continue
        train, test = members[members["split"] == "train"], members[members["split"] == "test"]
        for test_path, test_sha, test_content in zip(test["path"], test["sha256"], test["content"]):
            pairs += [{"test": test_path, "train": train_path,
                       "match": "identical" if train_sha == test_sha else "near" if content == test_content
                       else "same_lesion"}
                      for train_path, train_sha, content in zip(train["path"], train["sha256"], train["content"])]
    return pairs


def twin_summary(report: dict) -> str:
    """One audit summary line about Test images that have a copy in Train."""
    pairs = report.get("test_train_twins", [])
    kinds = {kind: sum(pair["match"] == kind for pair in pairs) for kind in ("identical", "near", "same_lesion")}
    return (f"  Test images with a Train twin (contamination): {len({p['test'] for p in pairs})} "
            f"({len(pairs)} Test/Train pairs: {kinds['identical']} identical, {kinds['near']} near-copies, "
            f"{kinds['same_lesion']} same lesion)")


def set_aside_train_twins(files: pd.DataFrame, report: dict, mode: str, announce: bool = True) -> pd.DataFrame:
    """``files`` with a boolean ``train_twin`` column; with ``mode`` ``exclude`` (the default) without the Train
    copies of Test images, with ``keep`` with them and a warning. ``announce``: say so (False: the caller already
    said it for the same data, e.g. a sweep's later jobs)."""
    pairs = report.get("test_train_twins", [])
    twins = {pair["test"] for pair in pairs} | {pair["train"] for pair in pairs}
    files = files.assign(**{TWIN_COLUMN: files["path"].isin(twins)})
    copies = files[TWIN_COLUMN] & (files["split"] == "train")
    tests = len({pair["test"] for pair in pairs})
    if not copies.any():
        return files
    if mode == "keep":
        (log.warning if announce else log.debug)("audit.test_contamination=keep: %d Train images that are copies or near-copies of %d Test "
                    "images stay in training and validation (as in the seed notebooks), so test_* metrics are "
                    "optimistic; test_clean_* leave those Test images out. audit.test_contamination=exclude "
                    "(the default) keeps them out of training.", int(copies.sum()), tests)
        return files
    (log.info if announce else log.debug)("kept %d Train copies of %d Test images out of training and validation (audit.test_contamination="
             "exclude)", int(copies.sum()), tests)
    return files[~copies].reset_index(drop=True)


def clean_test_metrics(test_files: pd.DataFrame, labels: np.ndarray, probabilities: np.ndarray,
                       score: Callable[[np.ndarray, np.ndarray], Any]) -> dict[str, float]:
    """``test_clean_images`` and ``test_clean_<metric>`` (``score``, e.g. an evaluation with ``.metrics``, on the Test images without a Train
    twin)."""
    clean = ~test_files[TWIN_COLUMN].to_numpy(dtype=bool) if TWIN_COLUMN in test_files else np.ones(len(labels), bool)
    metrics = {"test_clean_images": int(clean.sum())}
    if clean.any():
        metrics |= {f"test_clean_{name}": value for name, value in score(labels[clean], probabilities[clean]).metrics.items()}
    return metrics


def unscored_test_images(catalog: Catalog, files: pd.DataFrame, failures: dict[str, str],
                         conflict_policy: str) -> pd.DataFrame:
    """Every Test image (or entry of the Test folder) that will not be scored, with the reason: not scanned
    (not an image file in a Train class folder), dropped by ``audit.conflict_policy``, or unreadable."""
    test_dir = str(catalog.root / SPLIT_FOLDERS["test"])
    rows = [{"path": entry, "reason": "not scanned: " + ("folder is not a class of Train" if Path(entry).is_dir()
                                                        else "not an image file in a class folder of Train")}
            for entry in catalog.unexpected if entry.lstrip("'").startswith(test_dir)]
    catalog_test = catalog.files.loc[catalog.files["split"] == "test", "path"]
    rows += [{"path": path, "reason": f"dropped by audit.conflict_policy={conflict_policy} (label conflict)"}
             for path in catalog_test[~catalog_test.isin(files["path"])]]
    test_paths = set(catalog_test)
    rows += [{"path": path, "reason": f"unreadable: {reason}"} for path, reason in failures.items() if path in test_paths]
    return pd.DataFrame(rows, columns=UNSCORED_COLUMNS)
