"""One recipe's cross-validation parents over parts of one split, pooled into one parent (``ablation --pool-folds``).

A 5-fold CV of a slow recipe often runs in pieces (``study.cv_run_folds=[1]``, then ``[2]``, then ``[3,4,5]``, each
at the code of its day), while the recipe it is compared with ran all five folds at once: the ablation's groups
(:data:`melanoma_lab.reporting.ablation.GROUP_TAGS`) then never meet. Parents are pooled when they share
experiment, ``cv_folds``, nesting, seed and data fingerprint (hence one split) and the config they logged (their
MLflow params but where runs go: overrides that restate a default, e.g. a key set by hand before the experiment
file set it, do not matter), and their fold sets do not overlap: their out-of-fold predictions are concatenated and
they stand as one parent of the union of their folds. Where one recipe's parents overlap (a fold run twice), the
newest parent of each fold is pooled and the others stay apart, as they were.

A pooled parent's alert is recomputed from its images (each at its own fold's threshold, as
:func:`melanoma_lab.study.oof.oof_metrics` does); its seconds per fold are the mean over all its folds; a shift
check's worst drop per family is the worst over its parents (each parent checked its own images: a bound, not the
pooled images' drop); its run id joins the parents' (``6b87f901+741b67c3``).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable

import pandas as pd
from mlflow.entities import Run

from melanoma_lab.evaluation.metrics import alert_rates, threshold_alerts

POOL_TAGS = ("experiment", "cv_folds", "nested", "seed", "data_fingerprint")  # one split; GROUP_TAGS less the folds
SEPARATOR = "+"
SHIFT_DROPS = "oof_shift_worst_drop_"


@dataclass
class Pooled:
    """Parents of one recipe on disjoint folds of one split, standing as one (``info``/``data`` as an MLflow Run's)."""
    parents: list[Run]
    info: SimpleNamespace
    data: SimpleNamespace


def _folds(run: Run) -> set[int]:
    return {int(f) for f in run.data.tags.get("cv_run_folds", "").split(",") if f.strip()}


def _recipe(run: Run, config: Callable[[Run], dict[str, str]]) -> tuple:
    return tuple(run.data.tags.get(t, "") for t in POOL_TAGS) + tuple(sorted(config(run).items()))


def _pooled(parents: list[Run], overrides: Callable[[Run], dict[str, str]]) -> Pooled:
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
    return Pooled(parents, SimpleNamespace(run_id=SEPARATOR.join(p.info.run_id for p in parents),
                                           start_time=newest.info.start_time),
                  SimpleNamespace(tags=tags, params=dict(newest.data.params), metrics=metrics))


def pool_parents(runs: list[Run], config: Callable[[Run], dict[str, str]],
                 overrides: Callable[[Run], dict[str, str]]) -> list[Run | Pooled]:
    """``runs`` with each recipe's parents on disjoint parts of one split replaced by one :class:`Pooled` parent
    (``config``: what a run computed with; ``overrides``: what it was told). A fold held by several parents of
    the recipe goes with the newest of them; a parent that loses a fold that way stays on its own."""
    by_recipe: dict[tuple, list[Run]] = {}
    for run in runs:
        by_recipe.setdefault(_recipe(run, config), []).append(run)
    out: list[Run | Pooled] = []
    for members in by_recipe.values():
        taken: set[int] = set()
        pool, apart = [], []
        for run in sorted(members, key=lambda r: r.info.start_time or 0, reverse=True):
            folds = _folds(run)
            if folds and not folds & taken:
                pool.append(run)
                taken |= folds
            else:
                apart.append(run)
        out += ([_pooled(pool, overrides)] if len(pool) > 1 else pool) + apart
    return out


def pooled_predictions(parents: list[Run], read: Callable[[Run], pd.DataFrame | None]) -> pd.DataFrame | None:
    """The parents' out-of-fold predictions, one table (None where one of them logged none)."""
    tables = [read(p) for p in parents]
    if any(t is None for t in tables):
        return None
    table = pd.concat(tables, ignore_index=True)
    if table["path"].duplicated().any():
        raise LookupError(f"pooled parents {', '.join(p.info.run_id[:8] for p in parents)} both scored "
                          f"{table.loc[table['path'].duplicated(), 'path'].iloc[0]!r}: their folds are not of one "
                          "split; leave out --pool-folds or delete the stray parent")
    return table


def pooled_alert(table: pd.DataFrame, melanoma_class: str | None) -> dict[str, float]:
    """``oof_melanoma_alert_sensitivity`` / ``_specificity`` of pooled predictions (each image at its fold's
    threshold; no alert where its fold had none)."""
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

