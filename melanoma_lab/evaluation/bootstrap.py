"""The project's one bootstrap resampler: replicates draw the split's *groups* with replacement, each with all its
images, so byte copies, near copies and one lesion's (or patient's) images, which a model scores alike, are drawn
together and the interval is not narrowed as if each were a new case.

Every prediction table a run logs carries the split group of each image (column ``group``,
:func:`melanoma_lab.data.split.split_groups`). Tables logged before that have no such column: their images are then
resampled one by one (each image its own group: the draws are exactly the old image bootstrap's), and
:func:`resampled` says so. Used by the study report (:mod:`melanoma_lab.reporting.statistics`), the ablation table
(:mod:`melanoma_lab.reporting.ablation`) and the fold ensemble's operating point
(:mod:`melanoma_lab.study.calibration`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

GROUP_COLUMN = "group"  # a predictions table's split group per image
IMAGES_ONLY = "images one by one (no split group logged: too narrow)"  # copies and one lesion's images drawn apart


def replicate_rows(groups: Sequence | np.ndarray, samples: int, rng: np.random.Generator | int = 0
                   ) -> list[np.ndarray]:
    """Row indices of each of ``samples`` bootstrap replicates: the distinct ``groups`` drawn with replacement (as
    many draws as there are groups), each with all its rows. With one group per row this is the plain image
    bootstrap (the same draws as ``rng.integers(0, rows, (samples, rows))``)."""
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    codes, uniques = pd.factorize(np.asarray(groups))
    order = np.argsort(codes, kind="stable")
    members = np.split(order, np.cumsum(np.bincount(codes, minlength=len(uniques)))[:-1])
    draws = rng.integers(0, len(uniques), (samples, len(uniques)))
    if len(uniques) == len(codes):  # one row per group: the draws are the rows
        return list(order[draws])
    return [np.concatenate([members[g] for g in draw]) for draw in draws]


def groups_of(tables: Sequence[pd.DataFrame], paths: list[str]) -> np.ndarray | None:
    """One group code per image of ``paths`` that joins the groups of every table (two images are one group when any
    table groups them: tables of the same data agree, and where they do not the coarser grouping is the cautious
    one); None when a table lacks the ``group`` column (logged before it): resample images then. An image with no
    group is its own."""
    if not tables or any(GROUP_COLUMN not in table.columns for table in tables):
        return None
    parent = np.arange(len(paths))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for table in tables:
        codes = pd.factorize(table.drop_duplicates("path").set_index("path").loc[paths, GROUP_COLUMN])[0]
        first: dict[int, int] = {}
        for i, code in enumerate(codes):
            if code >= 0:
                parent[root(i)] = root(first.setdefault(code, i))
    return np.array([root(i) for i in range(len(paths))])


def resampled(groups: np.ndarray | None, images: int) -> str:
    """What a replicate draws, in words: ``N split groups of M images``, or :data:`IMAGES_ONLY`."""
    if groups is None:
        return IMAGES_ONLY
    return f"{len(np.unique(groups))} split groups of {images} images"


def percentile_interval(values: Sequence[float] | np.ndarray, confidence: float) -> tuple[float, float]:
    """The percentile interval of the finite ``values`` (a replicate without, say, a melanoma has no AUC); NaN when
    none is finite."""
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    if not len(finite):
        return float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    return float(np.quantile(finite, alpha)), float(np.quantile(finite, 1 - alpha))
