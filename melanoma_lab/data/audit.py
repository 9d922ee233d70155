"""Data audit: what is wrong with a dataset before anything trains on it.

``audit.json`` keys (lists of file groups, or counts):
- ``duplicate_groups``: byte-identical files within a split, one list of paths per group (>= 2 files)
- ``label_conflicts``: the duplicate groups whose copies carry different class labels
- ``cross_split_duplicates``: groups of files identical across Train and Test (a test leak)
- ``near_duplicate_groups``: groups of different files whose perceptual hashes are within
  ``audit.near_duplicate_distance`` bits, or one of which is a rotated or flipped copy of the other (exact copies
  are not repeated here)
- ``rotated_copies``: the pairs joined as rotated or flipped copies, ``{"a", "b", "view", "correlation"}``: view
  ``view`` of ``a`` is within the distance of ``b``'s hash and the pixels confirm it; ``rotated_candidates_rejected``:
  the pairs whose hashes matched only at a rotated view and whose pixels did not (different lesions; see
  :mod:`melanoma_lab.data.dihedral`)
- ``test_train_twins``: every (Test image, Train image) pair that is byte-identical or a near-copy, as
  ``{"test", "train", "match": identical | near}`` (contamination, see :mod:`melanoma_lab.data.contamination`)
- ``unreadable_files``: ``{path: reason}`` for files that do not decode as images
- ``empty_class_folders``, ``unexpected_entries``: layout problems
- ``class_counts``: ``{split: {class: count}}``; ``imbalance_ratio``: largest / smallest train class
- ``image_sizes``: width/height statistics of the readable files

Run it alone with ``melanoma-lab audit dataset=isic9 dataset.root=PATH``.
"""

from __future__ import annotations

import copy
import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from melanoma_lab.data.contamination import train_test_twins, twin_summary
from melanoma_lab.data.catalog import Catalog, fingerprint
from melanoma_lab.data.dihedral import VIEWS, confirmed, correlation, packed, pairs, remember, view_hashes
from melanoma_lab.errors import UserError


class DataAuditError(UserError, RuntimeError):
    """The audit found defects that the configured policy refuses to train with."""


def _inspect(path: str) -> tuple[list[str] | None, tuple[int, int] | None, str | None]:
    """(perceptual hashes of the 8 views as hex, (width, height), error) of one file."""
    try:
        with Image.open(path) as image:
            image.load()
            return view_hashes(image.convert("RGB")), image.size, None
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        return None, None, f"{type(error).__name__}: {error}"


def _groups_of_pairs(pairs: list[tuple[int, int]], n: int) -> list[list[int]]:
    """Connected components (of size >= 2) of the graph given by ``pairs``."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        parent[root(a)] = root(b)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def near_duplicate_groups(hashes: list[list[str]], sha256: list[str], paths: list[str], max_distance: int
                          ) -> tuple[list[list[int]], list[dict], list[dict]]:
    """(groups of indices of different files that are near-copies: perceptual hashes within ``max_distance`` bits,
    or a rotated or flipped copy confirmed by the pixels; the rotated copies, the rotated candidates rejected).
    ``hashes``: each file's 8 view hashes (:func:`melanoma_lab.data.dihedral.view_hashes`)."""
    views = np.array([packed(h) for h in hashes], dtype=np.uint64).reshape(len(hashes), VIEWS)
    found, rotated, rejected = [], [], []
    for i, j, k, _ in pairs(views, views[:, 0], max_distance, triangle=True):
        if sha256[i] == sha256[j]:
            continue
        if k:  # matched only at a rotated view: the pixels decide
            score = correlation(paths[i], paths[j], k)
            (rotated if confirmed(score) else rejected).append(
                {"a": paths[i], "b": paths[j], "view": k, "correlation": round(score, 3)})
            if not confirmed(score):
                continue
        found.append((i, j))
    return _groups_of_pairs(found, len(hashes)), rotated, rejected


_last_audit: dict[tuple[str, str, int], dict] = {}  # the latest audit of this process, by data and settings


def audit_catalog(catalog: Catalog, near_duplicate_distance: int) -> dict:
    """Every check of the module docstring, as a JSON-ready dict (computed once per process for the same
    files, contents and labels: a study's runs share it)."""
    key = (str(catalog.root), fingerprint(catalog.files), near_duplicate_distance)
    if key not in _last_audit:
        _last_audit.clear()
        _last_audit[key] = _audit(catalog, near_duplicate_distance)
    return copy.deepcopy(_last_audit[key])


def _audit(catalog: Catalog, near_duplicate_distance: int) -> dict:
    files = catalog.files
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        inspected = list(pool.map(_inspect, files["path"]))
    readable = [i for i, (h, _, _) in enumerate(inspected) if h is not None]
    unreadable = {files["path"][i]: err for i, (_, _, err) in enumerate(inspected) if err is not None}

    duplicate_groups, label_conflicts = [], []
    for (_, _), group in files.groupby(["split", "sha256"]):
        if len(group) > 1:
            entry = [{"path": p, "label": lab} for p, lab in zip(group["path"], group["label"])]
            duplicate_groups.append(entry)
            if group["label"].nunique() > 1:
                label_conflicts.append(entry)
    cross_split = [
        [{"path": p, "label": lab, "split": s} for p, lab, s in zip(g["path"], g["label"], g["split"])]
        for _, g in files.groupby("sha256") if g["split"].nunique() > 1]

    for i in readable:
        remember(files["sha256"][i], inspected[i][0])
    near, rotated, rejected = near_duplicate_groups(
        [inspected[i][0] for i in readable], [files["sha256"][i] for i in readable],
        [files["path"][i] for i in readable], near_duplicate_distance)
    near_groups = [[{"path": files["path"][readable[k]], "label": files["label"][readable[k]]} for k in g]
                   for g in near]
    sizes = np.array([inspected[i][1] for i in readable]) if readable else np.zeros((0, 2))
    counts = {split: {c: int(n) for c, n in Counter(g["label"]).items()} for split, g in files.groupby("split")}
    train_counts = [counts.get("train", {}).get(c, 0) for c in catalog.classes]
    return {
        "root": str(catalog.root),
        "files": int(len(files)),
        "duplicate_groups": duplicate_groups,
        "label_conflicts": label_conflicts,
        "cross_split_duplicates": cross_split,
        "near_duplicate_groups": near_groups,
        "rotated_copies": rotated,
        "rotated_candidates_rejected": rejected,
        "test_train_twins": train_test_twins(files, near_groups),
        "unreadable_files": unreadable,
        "empty_class_folders": catalog.empty_class_folders,
        "unexpected_entries": catalog.unexpected,
        "class_counts": counts,
        "imbalance_ratio": float(max(train_counts) / max(min(train_counts), 1)),
        "image_sizes": {
            "width": _stats(sizes[:, 0]), "height": _stats(sizes[:, 1])} if len(sizes) else {},
    }


def _stats(values: np.ndarray) -> dict[str, float]:
    return {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max())}


def summary(report: dict) -> str:
    """A few readable lines about the audit."""
    conflict_files = sum(len(g) for g in report["label_conflicts"])
    lines = [
        f"Data audit of {report['root']} ({report['files']} files)",
        f"  class counts: {report['class_counts']}",
        f"  imbalance ratio (largest/smallest train class): {report['imbalance_ratio']:.1f}",
        f"  byte-identical groups: {len(report['duplicate_groups'])} "
        f"({sum(len(g) for g in report['duplicate_groups'])} files)",
        f"  label conflicts (identical bytes, different labels): {len(report['label_conflicts'])} groups, "
        f"{conflict_files} files",
        f"  Train/Test identical files (test leak): {len(report['cross_split_duplicates'])} groups",
        f"  near-duplicate groups (perceptual hash): {len(report['near_duplicate_groups'])} "
        f"({sum(len(g) for g in report['near_duplicate_groups'])} files), of which rotated or flipped copies: "
        f"{len(report.get('rotated_copies', []))} pairs; rotated-hash matches the pixels rejected: "
        f"{len(report.get('rotated_candidates_rejected', []))}",
        twin_summary(report),
        f"  unreadable files: {len(report['unreadable_files'])}",
        f"  empty class folders: {len(report['empty_class_folders'])}; "
        f"unexpected entries: {len(report['unexpected_entries'])}",
    ]
    for path, reason in list(report["unreadable_files"].items())[:10]:
        lines.append(f"    unreadable: {path} ({reason})")
    return "\n".join(lines)


def apply_policy(files: pd.DataFrame, report: dict, policy: str) -> pd.DataFrame:
    """Apply ``audit.conflict_policy`` to label conflicts and Train/Test copies.

    warn: keep everything (the audit already reported it); drop: remove every copy of a conflicting
    image and the Train copies of images that are also in Test; fail: raise :class:`DataAuditError`.
    Train copies of Test images are also governed by ``audit.test_contamination``
    (:func:`melanoma_lab.data.contamination.set_aside_train_twins`, applied after this under every policy).
    """
    conflicts = {item["path"] for group in report["label_conflicts"] for item in group}
    leaked = {item["path"] for group in report["cross_split_duplicates"] for item in group
              if item["split"] == "train"}
    if policy == "fail" and (conflicts or leaked):
        raise DataAuditError(
            f"audit found {len(report['label_conflicts'])} label-conflict groups and "
            f"{len(report['cross_split_duplicates'])} Train/Test duplicate groups; fix the data, or set "
            "audit.conflict_policy=drop (remove them) or warn (keep them)")
    if policy == "drop":
        return files[~files["path"].isin(conflicts | leaked)].reset_index(drop=True)
    return files


def write_report(report: dict, out_dir: str | Path, name: str = "audit.json") -> Path:
    """Write the audit JSON atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    staging = out / f".{name}.tmp"
    staging.write_text(json.dumps(report, indent=2))
    os.replace(staging, out / name)
    return out / name
