"""Stratified train/validation splits and cross-validation folds that keep copies of an image together, and the
images of one lesion (or patient: the source's ``group_id``)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import StratifiedGroupKFold

from melanoma_lab.data.columns import GROUP_COLUMN


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


def split_groups(files: pd.DataFrame, near_duplicate_groups: list[list[dict]]) -> pd.Series:
    """A group key per row that splits must not cut: :func:`content_groups` joined with the source's lesion (or
    patient) ids, transitively (a copy of an image of lesion A in lesion B puts A and B in one group). A row without
    a ``group_id`` keeps its content group."""
    content = content_groups(files, near_duplicate_groups)
    if GROUP_COLUMN not in files or not (files[GROUP_COLUMN] != "").any():
        return content
    lesion = files[GROUP_COLUMN].to_numpy()
    rows = np.arange(len(files))
    keys = np.concatenate(["content:" + content.to_numpy(), "lesion:" + lesion[lesion != ""]])
    codes, uniques = pd.factorize(keys)  # each row is joined to its content key and its lesion key (nodes after rows)
    edges = np.concatenate([rows, rows[lesion != ""]]), codes + len(files)
    graph = coo_matrix((np.ones(len(keys)), edges), shape=(len(files) + len(uniques),) * 2)
    _, component = connected_components(graph, directed=False)
    return pd.Series([f"group{c}" for c in component[:len(files)]], index=files.index)


def _groups(files: pd.DataFrame) -> pd.Series:
    return files["group"] if "group" in files else files["sha256"]


def stratified_group_folds(files: pd.DataFrame, n_folds: int, seed: int) -> list[np.ndarray]:
    """Fold index arrays (validation rows of each fold), stratified by label, grouped by content, so a
    copy (or near-copy) of an image never sits on both sides of a split."""
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return [val for _, val in splitter.split(files, files["label"], groups=_groups(files))]


def fold_split(files: pd.DataFrame, n_folds: int, fold: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, validation) of cross-validation ``fold`` (0-based) out of ``n_folds``."""
    return _split_off(files, stratified_group_folds(files, n_folds, seed)[fold])


def _split_off(files: pd.DataFrame, validation_rows: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    is_val = np.zeros(len(files), dtype=bool)
    is_val[validation_rows] = True
    return files[~is_val].reset_index(drop=True), files[is_val].reset_index(drop=True)


MAX_SPLIT_FOLDS = 20  # val_fraction is taken as m of n folds, n <= this: within 1/40 of the request


def validation_folds(val_fraction: float, n_groups: int) -> tuple[int, int]:
    """(m, n): validation is the first ``m`` of ``n`` stratified group folds, ``m / n`` the fraction nearest to
    ``val_fraction`` with ``n <= MAX_SPLIT_FOLDS`` (and no more folds than groups); ``1/k`` gives (1, k), the split used
    before fractions other than 1/k were honoured."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction!r} must be between 0 and 1 (exclusive)")
    if abs(1 / val_fraction - round(1 / val_fraction)) < 1e-9:
        return 1, round(1 / val_fraction)
    max_folds = max(2, min(MAX_SPLIT_FOLDS, n_groups))
    share = Fraction(val_fraction).limit_denominator(max_folds)
    if not 0 < share < 1:  # rounded to 0 or 1: keep at least one fold on each side
        share = Fraction(min(max(round(val_fraction * max_folds), 1), max_folds - 1), max_folds)
    return share.numerator, share.denominator


def train_val_split(files: pd.DataFrame, val_fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split into (train, validation) with about ``val_fraction`` of the rows in validation (to within group
    rounding and 1/40): the first m of n stratified, content-grouped folds (:func:`validation_folds`). A fraction
    1/k takes fold 1 of k, as the split always has."""
    m, n = validation_folds(val_fraction, _groups(files).nunique())
    return _split_off(files, np.concatenate(stratified_group_folds(files, n, seed)[:m]))
