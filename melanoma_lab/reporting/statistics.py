"""Scores and two-level bootstrap intervals over seeds that share the same held-out images.

Every seed of an experiment is evaluated on the same held-out images, so the images are resampled
jointly: one draw of the split's groups (:mod:`melanoma_lab.evaluation.bootstrap`: copies and one lesion's images
together; images one by one for runs that logged no group) is applied to every seed of a bootstrap replicate, and
the seeds themselves are drawn with replacement. The interval therefore includes training (seed-to-seed)
variance and does not shrink as if each seed, or each copy of an image, had brought new cases. Tables are joined on
image path (never on row position) and runs on seed (never on list position).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score

from melanoma_lab.evaluation import registry
from melanoma_lab.evaluation.bootstrap import groups_of, percentile_interval, replicate_rows, resampled
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


@dataclass
class Joined:
    """Runs' predictions of the same images, joined on path: labels (n,), per run the class probabilities (n, k) and
    the alert threshold of each image (n,; None when the run has none), and the images' split groups (None: a run
    logged none, the images are resampled one by one)."""

    paths: list[str]
    labels: np.ndarray
    probabilities: list[np.ndarray]
    thresholds: list[np.ndarray | None]
    groups: np.ndarray | None

    @property
    def resampled(self) -> str:
        return resampled(self.groups, len(self.paths))


def joined(tables: Sequence[pd.DataFrame], paths: list[str]) -> Joined:
    """:class:`Joined` predictions of ``paths``; raises when a path is listed twice in one table or carries different
    labels in different tables."""
    labels, probs, thresholds = None, [], []
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
        probs.append(probabilities(rows.reset_index()))
        threshold = rows["alert_threshold"].to_numpy(dtype=float) if "alert_threshold" in rows else None
        thresholds.append(threshold if threshold is not None and np.isfinite(threshold).any() else None)
    return Joined(paths, np.asarray(labels), probs, thresholds, groups_of(tables, paths))


def aligned(tables: Sequence[pd.DataFrame], paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Labels (n,) and predicted classes (seeds, n) of ``paths``, joined on path (see :func:`joined`)."""
    found = joined(tables, paths)
    return found.labels, np.array([p.argmax(axis=1) for p in found.probabilities])


def fixed_class_score(labels: np.ndarray, min_images: int) -> Score:
    """Balanced accuracy over one fixed set of classes, those with at least ``min_images`` of ``labels`` (all the
    held-out images, before any resampling): a class of two images, present in one replicate and absent from the
    next, would otherwise change what is averaged from replicate to replicate."""
    frequent = np.flatnonzero(np.bincount(np.asarray(labels, dtype=int)) >= min_images)
    return lambda y, predicted: frequent_balanced_accuracy(y, predicted, frequent)


RunValues = Callable[[np.ndarray, int], dict[str, float]]  # (rows, run) -> named values of that run on those rows


def two_level(runs: int, groups: np.ndarray, values: RunValues, samples: int, seed: int = 0) -> pd.DataFrame:
    """One row per bootstrap replicate: the mean over the drawn runs (with multiplicity) of ``values`` on the drawn
    rows. Per replicate the groups are drawn first (:func:`replicate_rows`: the same draws however many runs there
    are), then ``runs`` run indices with replacement."""
    rng = np.random.default_rng(seed)
    rows = replicate_rows(groups, samples, rng)
    run_draws = rng.integers(0, runs, (samples, runs))
    out = []
    for index, draw in zip(rows, run_draws):
        per_run = {r: values(index, r) for r in np.unique(draw)}
        out.append({name: float(np.mean([per_run[r][name] for r in draw])) for name in per_run[draw[0]]})
    return pd.DataFrame(out)


def _units(found: Joined) -> np.ndarray:
    """What a replicate draws: the split groups, or each image on its own."""
    return found.groups if found.groups is not None else np.arange(len(found.labels))


def bootstrap_interval(tables: Tables, samples: int, confidence: float, seed: int = 0,
                       score: Score | None = None, min_images: int = 1) -> tuple[float, float]:
    """Percentile CI of the seed-mean score by a two-level bootstrap: per replicate, seeds drawn with replacement
    and one draw of the split groups (common to every seed, joined on path) applied to all of them. The score is by
    default balanced accuracy over the classes with at least ``min_images`` held-out images
    (:func:`fixed_class_score`: the same classes in every replicate)."""
    by_seed = list(_by_seed(tables).values())
    found = joined(by_seed, common_paths(by_seed))
    if not len(found.labels):
        raise ValueError("the runs share no held-out image: nothing to resample")
    score = score or fixed_class_score(found.labels, min_images)
    predicted = [p.argmax(axis=1) for p in found.probabilities]
    means = two_level(len(by_seed), _units(found), lambda rows, r: {"score": score(found.labels[rows],
                                                                                    predicted[r][rows])},
                      samples, seed)
    return percentile_interval(means["score"], confidence)


def report_intervals(tables: Tables, classes: list[str], melanoma_class: str | None, samples: int,
                     confidence: float, min_images: int = 1, seed: int = 0) -> tuple[dict[str, tuple], str]:
    """Every metric the registry shows with an interval in the study report (:data:`registry.REPORT_INTERVAL`), as
    ``name: (seed mean, low, high)`` by the two-level bootstrap of :func:`bootstrap_interval` (balanced accuracy over
    the classes with at least ``min_images`` held-out images; the alert at each image's ``alert_threshold``), and
    what the replicates resampled, in words. A metric that does not apply (no melanoma class, no threshold) is left
    out."""
    by_seed = list(_by_seed(tables).values())
    found = joined(by_seed, common_paths(by_seed))
    if not len(found.labels):
        raise ValueError("the runs share no held-out image: nothing to resample")
    frequent = np.flatnonzero(np.bincount(found.labels.astype(int), minlength=len(classes)) >= min_images)
    metrics = [registry.METRICS[name] for name in registry.names(registry.REPORT_INTERVAL)]

    def values(rows: np.ndarray, run: int) -> dict[str, float]:
        threshold = found.thresholds[run]
        scored = registry.Scored(found.labels[rows], found.probabilities[run][rows], classes, melanoma_class,
                                 None if threshold is None else threshold[rows], frequent)
        computed = {m.name: m.compute(scored) for m in metrics}
        return {name: np.nan if value is None else value for name, value in computed.items()}

    point = pd.DataFrame([values(np.arange(len(found.labels)), r) for r in range(len(by_seed))]).mean()
    replicates = two_level(len(by_seed), _units(found), values, samples, seed)
    out = {name: (float(point[name]), *percentile_interval(replicates[name], confidence))
           for name in point.index if np.isfinite(point[name])}
    return out, found.resampled


def paired_difference(a: Tables, b: Tables, samples: int, confidence: float, seed: int = 0,
                      min_images: int = 1) -> dict:
    """Balanced accuracy (over the classes with at least ``min_images`` common held-out images, the same set in
    every replicate) of B minus A, paired by seed (the seeds both ran) and by image (the held-out images every one
    of those runs was evaluated on), with a two-level bootstrap CI over the split groups (images one by one for runs
    that logged none; ``resampled`` says which) and ``share_not_better``, the share of replicates in which B is not
    better (a bootstrap summary, not a p-value). ``images`` is the number of common images; ``images_a`` /
    ``images_b`` how many each experiment's runs share on their own (they differ when the experiments were
    evaluated on different held-out sets)."""
    a, b = _by_seed(a), _by_seed(b)
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError(f"paired comparison needs a seed that both experiments ran (A: {sorted(a)}, B: {sorted(b)})")
    runs_a, runs_b = [a[s] for s in seeds], [b[s] for s in seeds]
    paths = common_paths(runs_a + runs_b)
    if not paths:
        raise ValueError("paired comparison needs held-out images that both runs were evaluated on")
    found = joined(runs_a + runs_b, paths)  # rows 0..k-1: A per seed, k..2k-1: B per seed
    labels, k = found.labels, len(seeds)
    predicted = [p.argmax(axis=1) for p in found.probabilities]
    score = fixed_class_score(labels, min_images)

    def delta(rows: np.ndarray, s: int) -> dict[str, float]:
        return {"delta": score(labels[rows], predicted[s + k][rows]) - score(labels[rows], predicted[s][rows])}

    observed = float(np.mean([delta(np.arange(len(labels)), s)["delta"] for s in range(k)]))
    deltas = two_level(k, _units(found), delta, samples, seed)["delta"].to_numpy()
    low, high = percentile_interval(deltas, confidence)
    return {"delta": observed, "low": low, "high": high, "share_not_better": float(np.mean(deltas <= 0)),
            "images": len(paths), "images_a": len(common_paths(runs_a)), "images_b": len(common_paths(runs_b)),
            "seeds": seeds, "resampled": found.resampled}
