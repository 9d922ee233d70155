"""Stratified train/validation split that keeps byte-identical images together."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold


def stratified_group_folds(files: pd.DataFrame, n_folds: int, seed: int) -> list[np.ndarray]:
    """Fold index arrays (validation rows of each fold), stratified by label, grouped by content hash.

    Copies of one image (same ``sha256``) always land in the same fold, so a twin never sits on both
    sides of a split.
    """
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return [val for _, val in splitter.split(files, files["label"], groups=files["sha256"])]


def train_val_split(files: pd.DataFrame, val_fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split into (train, validation); the validation share is 1/round(1/val_fraction)."""
    n_folds = max(2, round(1 / val_fraction))
    val_index = stratified_group_folds(files, n_folds, seed)[0]
    is_val = np.zeros(len(files), dtype=bool)
    is_val[val_index] = True
    return files[~is_val].reset_index(drop=True), files[is_val].reset_index(drop=True)
