"""Scores and two-level bootstrap intervals over seeds that share the same held-out images.

Every seed of an experiment is evaluated on the same held-out images, so the images are resampled
jointly: one draw of image indices is applied to every seed of a bootstrap replicate, and the seeds
themselves are drawn with replacement. The interval therefore includes training (seed-to-seed)
variance and does not shrink as if each seed had brought new images. Tables are joined on image path
(never on row position) and runs on seed (never on list position).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score

from melanoma_lab.evaluation.scores import frequent_balanced_accuracy

Tables = Mapping[int, pd.DataFrame] | Sequence[pd.DataFrame]
Score = Callable[[np.ndarray, np.ndarray], float]  # (labels, predicted classes) -> score


def probabilities(table: pd.DataFrame) -> np.ndarray:
    return table[[c for c in table.columns if c.startswith("p_")]].to_numpy()


def balanced_accuracy_of(table: pd.DataFrame) -> float:
    return float(balanced_accuracy_score(table["label"], probabilities(table).argmax(axis=1)))


def clean_part(table: pd.DataFrame) -> pd.DataFrame | None:
    """The images without a Train twin (``train_twin`` column false); None when the run did not log the column."""
    if "train_twin" not in table.columns:
        return None
    twin = table["train_twin"].astype(str).str.lower().isin(("true", "1"))
    return table[~twin.to_numpy()]


def _by_seed(tables: Tables) -> dict[int, pd.DataFrame]:
    return dict(tables) if isinstance(tables, Mapping) else dict(enumerate(tables))


def common_paths(tables: Sequence[pd.DataFrame]) -> list[str]:
    """Image paths present in every table, sorted."""
    sets = [set(t["path"]) for t in tables]
    return sorted(set.intersection(*sets)) if sets else []


def aligned(tables: Sequence[pd.DataFrame], paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Labels (n,) and predicted classes (seeds, n) of ``paths``, joined on path; raises when a path is
    listed twice in one table or carries different labels in different tables."""
    labels, predicted = None, []
    for table in tables:
        if table["path"].duplicated().any():
            raise ValueError(f"image {table.loc[table['path'].duplicated(), 'path'].iloc[0]!r} appears twice in "
                             "one predictions table: every held-out image must be scored once")
        rows = table.set_index("path").loc[paths]
        y = rows["label"].to_numpy()
        if labels is not None and not np.array_equal(labels, y):
            differs = paths[int(np.flatnonzero(labels != y)[0])]
            raise ValueError(f"image {differs!r} has different labels in different runs: were they evaluated on "
                             "the same dataset?")
        labels = y
        predicted.append(probabilities(rows.reset_index()).argmax(axis=1))
    return labels, np.array(predicted)


def fixed_class_score(labels: np.ndarray, min_images: int) -> Score:
    """Balanced accuracy over one fixed set of classes, those with at least ``min_images`` of ``labels`` (all the
    held-out images, before any resampling): a class of two images, present in one replicate and absent from the
    next, would otherwise change what is averaged from replicate to replicate."""
    frequent = np.flatnonzero(np.bincount(np.asarray(labels, dtype=int)) >= min_images)
    return lambda y, predicted: frequent_balanced_accuracy(y, predicted, frequent)


def _draws(rng: np.random.Generator, samples: int, images: int, seeds: int) -> tuple[np.ndarray, np.ndarray]:
    """Image indices (samples, images) first, then seed indices (samples, seeds): the image draws do not
    depend on how many seeds there are."""
    return rng.integers(0, images, (samples, images)), rng.integers(0, seeds, (samples, seeds))


def _seed_mean(score: Score, labels: np.ndarray, predicted: np.ndarray, index: np.ndarray,
               seed_draw: np.ndarray) -> float:
    """Mean over the drawn seeds (with multiplicity) of the score on the drawn images."""
    scores = {s: score(labels[index], predicted[s, index]) for s in np.unique(seed_draw)}
    return float(np.mean([scores[s] for s in seed_draw]))


def _interval(values: Sequence[float], confidence: float) -> tuple[float, float]:
    alpha = (1 - confidence) / 2
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))


def bootstrap_interval(tables: Tables, samples: int, confidence: float, seed: int = 0,
                       score: Score | None = None, min_images: int = 1) -> tuple[float, float]:
    """Percentile CI of the seed-mean score by a two-level bootstrap: per replicate, seeds drawn with replacement
    and one draw of the images (common to every seed, joined on path) applied to all of them. The score is by
    default balanced accuracy over the classes with at least ``min_images`` held-out images
    (:func:`fixed_class_score`: the same classes in every replicate)."""
    by_seed = list(_by_seed(tables).values())
    labels, predicted = aligned(by_seed, common_paths(by_seed))
    if not len(labels):
        raise ValueError("the runs share no held-out image: nothing to resample")
    score = score or fixed_class_score(labels, min_images)
    image_draws, seed_draws = _draws(np.random.default_rng(seed), samples, len(labels), len(by_seed))
    means = [_seed_mean(score, labels, predicted, index, draw) for index, draw in zip(image_draws, seed_draws)]
    return _interval(means, confidence)


def paired_difference(a: Tables, b: Tables, samples: int, confidence: float, seed: int = 0,
                      min_images: int = 1) -> dict:
    """Balanced accuracy (over the classes with at least ``min_images`` common held-out images, the same set in
    every replicate) of B minus A, paired by seed (the seeds both ran) and by image (the held-out images every one
    of those runs was evaluated on), with a two-level bootstrap CI and ``share_not_better``, the share of
    replicates in which B is not better (a bootstrap summary, not a p-value). ``images`` is the number of common
    images;
    ``images_a`` / ``images_b`` how many each experiment's runs share on their own (they differ when the
    experiments were evaluated on different held-out sets)."""
    a, b = _by_seed(a), _by_seed(b)
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError(f"paired comparison needs a seed that both experiments ran (A: {sorted(a)}, B: {sorted(b)})")
    runs_a, runs_b = [a[s] for s in seeds], [b[s] for s in seeds]
    paths = common_paths(runs_a + runs_b)
    if not paths:
        raise ValueError("paired comparison needs held-out images that both runs were evaluated on")
    labels, predicted_a = aligned(runs_a, paths)
    _, predicted_b = aligned(runs_b, paths)
    both = np.concatenate([predicted_a, predicted_b])  # rows 0..k-1: A per seed, k..2k-1: B per seed
    k = len(seeds)
    score = fixed_class_score(labels, min_images)

    def delta(index: np.ndarray, seed_draw: np.ndarray) -> float:
        scores = {s: score(labels[index], both[s, index]) for s in np.unique(seed_draw)}
        scores |= {s + k: score(labels[index], both[s + k, index]) for s in np.unique(seed_draw)}
        return float(np.mean([scores[s + k] - scores[s] for s in seed_draw]))

    observed = delta(np.arange(len(labels)), np.arange(k))
    image_draws, seed_draws = _draws(np.random.default_rng(seed), samples, len(labels), k)
    deltas = np.array([delta(index, draw) for index, draw in zip(image_draws, seed_draws)])
    low, high = _interval(deltas, confidence)
    return {"delta": observed, "low": low, "high": high, "share_not_better": float(np.mean(deltas <= 0)),
            "images": len(paths), "images_a": len(common_paths(runs_a)), "images_b": len(common_paths(runs_b)),
            "seeds": seeds}
