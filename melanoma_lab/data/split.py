"""Stratified train/validation splits and cross-validation folds that keep copies of an image together."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold


def content_groups(files: pd.DataFrame, near_duplicate_groups: list[list[dict]]) -> pd.Series:
    """A group key per row: byte-identical files share one, and so do near-duplicates (audit groups)."""
    parent: dict[str, str] = {sha: sha for sha in files["sha256"]}

    def root(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    sha_of = dict(zip(files["path"], files["sha256"]))
    for group in near_duplicate_groups:
        members = [sha_of[item["path"]] for item in group if item["path"] in sha_of]
        for other in members[1:]:
            parent[root(other)] = root(members[0])
    return files["sha256"].map(root)


def _groups(files: pd.DataFrame) -> pd.Series:
    return files["group"] if "group" in files else files["sha256"]


def stratified_group_folds(files: pd.DataFrame, n_folds: int, seed: int) -> list[np.ndarray]:
    """Fold index arrays (validation rows of each fold), stratified by label, grouped by content, so a
    copy (or near-copy) of an image never sits on both sides of a split."""
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return [val for _, val in splitter.split(files, files["label"], groups=_groups(files))]


def fold_split(files: pd.DataFrame, n_folds: int, fold: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, validation) of cross-validation ``fold`` (0-based) out of ``n_folds``."""
    is_val = np.zeros(len(files), dtype=bool)
    is_val[stratified_group_folds(files, n_folds, seed)[fold]] = True
    return files[~is_val].reset_index(drop=True), files[is_val].reset_index(drop=True)


def train_val_split(files: pd.DataFrame, val_fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split into (train, validation); the validation share is 1/round(1/val_fraction)."""
    return fold_split(files, max(2, round(1 / val_fraction)), 0, seed)
