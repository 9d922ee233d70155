"""One recipe's cross-validation parents over parts of one split, pooled into one parent (``ablation --pool-folds``).

A 5-fold CV of a slow recipe often runs in pieces (``study.cv_run_folds=[1]``, then ``[2]``, then ``[3,4,5]``, each
at the code of its day), while the recipe it is compared with ran all five folds at once: the ablation's groups
(:data:`melanoma_lab.reporting.ablation.GROUP_TAGS`) then never meet. Parents are pooled when they share
experiment, ``cv_folds``, nesting, seed, data fingerprint and calibration slice (hence one split) and the config
they logged (their MLflow params but where runs go: overrides that restate a default, e.g. a key set by hand before
the experiment file set it, do not matter; a config key added to the code between the pieces does, and keeps them
apart), and neither their folds nor their images overlap: their out-of-fold predictions are concatenated and they
stand as one parent of the union of their folds. Where one recipe's parents overlap (a fold run twice), the pieces
that cover the most folds are pooled (of equal covers, the newer) and the others stay apart, as they were.

A pooled parent's alert is recomputed from its images (each at its own fold's threshold, as
:func:`melanoma_lab.study.oof.oof_metrics` does; none when a part logged no thresholds); its seconds per fold are
the mean over all its folds; a shift check's worst drop per family is the worst of its parents' own drops (each on
its own images: not the drop the pooled images would show, which a shift check of the pooled models would measure);
its run id joins the parents' (``6b87f901+741b67c3``).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from types import SimpleNamespace
from typing import Callable

import pandas as pd
from mlflow.entities import Run

from melanoma_lab.evaluation.metrics import alert_rates, threshold_alerts

POOL_TAGS = ("experiment", "cv_folds", "nested", "seed", "data_fingerprint", "calibration_fraction")  # one split
SEPARATOR = "+"
SHIFT_DROPS = "oof_shift_worst_drop_"
SEARCHED = 12  # a recipe's parents searched for the best cover (2^12 subsets); beyond, its newest 12
PER_PART = ("alert_threshold", "group")  # columns that mean something only where every part has them


@dataclass
class Pooled:
    """Parents of one recipe on disjoint folds of one split, standing as one (``info``/``data`` as an MLflow Run's)."""
    parents: list[Run]
    info: SimpleNamespace
    data: SimpleNamespace
    oof: pd.DataFrame


def fold_set(tag: str) -> set[int]:
    """The folds a ``cv_run_folds`` tag names ("1,2" -> {1, 2}; none for an empty or missing tag)."""
    return {int(f) for f in tag.split(",") if f.strip().isdigit()}


def _folds(run: Run) -> set[int]:
    return fold_set(run.data.tags.get("cv_run_folds", ""))


def _recipe(run: Run, config: Callable[[Run], dict[str, str]]) -> tuple:
    return tuple(run.data.tags.get(t, "") for t in POOL_TAGS) + tuple(sorted(config(run).items()))


def _cover(members: list[Run], paths: dict[str, set[str]]) -> tuple[Run, ...]:
    """The parents to pool: pairwise disjoint in folds and images, covering the most folds; of equal covers the one
    whose oldest part is newest, then the fewest parts."""
    candidates = sorted((m for m in members if _folds(m)), key=lambda r: r.info.start_time or 0)[-SEARCHED:]
    best, best_key = (), None
    for size in range(1, len(candidates) + 1):
        for parts in combinations(candidates, size):
            if any(_folds(a) & _folds(b) or paths[a.info.run_id] & paths[b.info.run_id]
                   for a, b in combinations(parts, 2)):
                continue
            key = (len(set().union(*map(_folds, parts))), min(p.info.start_time or 0 for p in parts), -size)
            if best_key is None or key > best_key:
                best, best_key = parts, key
    return best


def _pooled(parents: list[Run], tables: dict[str, pd.DataFrame], overrides: Callable[[Run], dict[str, str]]
            ) -> Pooled:
    folds = sorted(set().union(*(_folds(p) for p in parents)))
    parents = sorted(parents, key=lambda p: min(_folds(p)))
    given = [overrides(p) for p in parents]
    common = {k: v for k, v in given[0].items() if all(g.get(k) == v for g in given)}  # restated defaults drop out
    newest = max(parents, key=lambda p: p.info.start_time or 0)
    tags = {k: v for k, v in newest.data.tags.items() if not k.startswith("override.")}
    tags |= {f"override.{k}": v for k, v in common.items()}
    tags |= {"cv_run_folds": ",".join(map(str, folds)), "pooled_from": SEPARATOR.join(p.info.run_id for p in parents),
             "code_version": SEPARATOR.join(dict.fromkeys(p.data.tags.get("code_version", "?") for p in parents))}
    seconds = [(p.data.metrics.get("cv_mean_run_seconds"), len(_folds(p))) for p in parents]
    metrics = {key: max(p.data.metrics[key] for p in parents if key in p.data.metrics)
               for key in {k for p in parents for k in p.data.metrics if k.startswith(SHIFT_DROPS)}}
    if all(s is not None for s, _ in seconds):
        metrics["cv_mean_run_seconds"] = sum(s * n for s, n in seconds) / sum(n for _, n in seconds)
    parts = [tables[p.info.run_id] for p in parents]
    partial = [c for c in PER_PART if not all(c in t for t in parts)]
    oof = pd.concat([t.drop(columns=[c for c in partial if c in t]) for t in parts], ignore_index=True)
    metrics |= pooled_alert(oof, newest.data.params.get("dataset.melanoma_class"))
    return Pooled(parents, SimpleNamespace(run_id=SEPARATOR.join(p.info.run_id for p in parents),
                                           start_time=newest.info.start_time),
                  SimpleNamespace(tags=tags, params=dict(newest.data.params), metrics=metrics), oof)


def pool_parents(runs: list[Run], tables: dict[str, pd.DataFrame], config: Callable[[Run], dict[str, str]],
                 overrides: Callable[[Run], dict[str, str]]) -> list[Run | Pooled]:
    """``runs`` (each with its out-of-fold predictions in ``tables``, by run id) with each recipe's parents on
    disjoint parts of one split replaced by one :class:`Pooled` parent (``config``: what a run computed with;
    ``overrides``: what it was told). Parents left out of a recipe's cover (:func:`_cover`) stay on their own."""
    by_recipe: dict[tuple, list[Run]] = {}
    for run in runs:
        by_recipe.setdefault(_recipe(run, config), []).append(run)
    out: list[Run | Pooled] = []
    for members in by_recipe.values():
        chosen = _cover(members, {m.info.run_id: set(tables[m.info.run_id]["path"]) for m in members})
        if len(chosen) < 2:
            out += members
            continue
        out += [_pooled(list(chosen), tables, overrides), *(m for m in members if m not in chosen)]
    return out


def pooled_alert(table: pd.DataFrame, melanoma_class: str | None) -> dict[str, float]:
    """``oof_melanoma_alert_sensitivity`` / ``_specificity`` of pooled predictions (each image at its fold's
    threshold; no alert where its fold had none); nothing without thresholds or a melanoma class."""
    column = f"p_{melanoma_class}"
    classes = [c[2:] for c in table.columns if c.startswith("p_")]
    if column not in table or "alert_threshold" not in table:
        return {}
    alerts = threshold_alerts(table[column].to_numpy(dtype=float), table["alert_threshold"].to_numpy(dtype=float))
    rates = alert_rates(table["label"].to_numpy() == classes.index(melanoma_class), alerts)
    return {f"oof_{k}": v for k, v in rates.items()}


def is_pooled(run: Run | Pooled) -> bool:
    return isinstance(run, Pooled)


def parent_ids(run_id: str) -> list[str]:
    """The MLflow run ids behind an arm's run id (a pooled one joins its parents')."""
    return run_id.split(SEPARATOR)


def short_id(run_id: str) -> str:
    return SEPARATOR.join(part[:8] for part in parent_ids(run_id))
