"""Ablation tables from MLflow: cross-validation parents of one experiment on identical folds, each differing
from a baseline by its own overrides, compared on their out-of-fold predictions (no retraining).

Parents are on identical folds when they share experiment, ``cv_folds``, ``cv_run_folds``, nesting, seed, data
fingerprint and calibration slice (the folds are drawn from the seed and the data, after the share of Train that a
fold ensemble's calibration slice holds out: ``calibration_fraction``). In such a group the *baseline* is the run whose
overrides are the ones every run of the group has; each other run's *change* is what it overrides beyond them,
e.g. ``optimizer.use_ema=false``. A run with the baseline's overrides run again is a replicate: its difference is
the noise of training alone, against which the other differences can be read, unless its logged config differs
(the experiment file was edited between them): then the newest such run keeps the overrides' place and each older
one shows, as changes, its own values of the keys that differ (``dataset.colour_constancy_grey=None``).
After a recipe decision, name the new reference explicitly (``baseline=("dataset.colour_constancy_power=null",)``):
the baseline is then the run with the common overrides plus those, groups without such a run are left out, and a
run that lacks one of them shows it as ``key=(default)``.

A run on some of the folds of a run on more (an arm run on fold 1 only, beside a reference that ran all five) is in
that run's group: it is compared on its own folds' images, and its change names its folds (``(folds 1)``). Each run
joins the run on the most folds of the same split that holds all of its own; runs on folds that no other run holds
all of (fold 1, fold 2, folds 3-5 of one recipe run in pieces) stay apart unless pooled.

Experiments are compared the same way: with several experiments (``experiment=("m5", "m6")``) the group
leaves the ``experiment`` tag out, each run's ``experiment=<name>`` override is one of its changes, and the first
experiment named is the reference unless a ``baseline`` says otherwise. Where a parent ran the shift check
(:mod:`melanoma_lab.study.shift_check`), its worst drop per shift family is a column too.

Differences are paired by image (joined on path) with a bootstrap over the split's groups (copies and one lesion's
images drawn together; images one by one for runs that logged no group, and the table says so): balanced accuracy
over the classes with at least ``evaluation.frequent_class_images`` images, and melanoma-vs-rest ROC-AUC. Such an
interval covers the sampling of images, not the noise of training: :mod:`melanoma_lab.reporting.ablation_notes`
states the noise floor (repeat runs of the baseline) and how many intervals the table shows. Alert sensitivity
and specificity are each run's own (every image at its own fold's threshold, chosen on inner validation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from melanoma_lab.evaluation.bootstrap import groups_of, percentile_interval, replicate_rows, resampled
from melanoma_lab.evaluation.scores import binary_auc, frequent_balanced_accuracy
from melanoma_lab.reporting.pooling import fold_set, is_pooled, pool_parents, pooled_alert
from melanoma_lab.reporting.selection import OOF_FILE
from melanoma_lab.reporting.statistics import common_paths, probabilities

GROUP_TAGS = ("experiment", "cv_folds", "cv_run_folds", "nested", "seed", "data_fingerprint", "calibration_fraction")
FOLDS = GROUP_TAGS.index("cv_run_folds")  # in a group key: the folds of the group's run on the most folds
NOT_A_CHANGE = ("study.", "tracking.", "paths.", "hydra.")  # where runs go, not what they compute
BASELINE = "baseline"
ALONE = "(the only run on these folds)"
SHIFT_DROPS = "oof_shift_worst_drop_"  # the shift check's worst drop per family (melanoma_lab.study.shift_check)


@dataclass
class Arm:
    run_id: str
    changes: tuple[str, ...]  # overrides beyond the group's common ones ("" for the baseline)
    oof: pd.DataFrame
    metrics: dict[str, float]
    tags: dict[str, str]
    start_time: int
    melanoma_class: str | None  # the run's dataset.melanoma_class
    baseline: tuple[str, ...] = ()  # the overrides named as the reference beyond the common ones
    overrides: tuple[str, ...] = ()  # all its own (key=value, sorted)
    folds: str = ""  # the folds it ran (cv_run_folds: "1,2"), maybe fewer than its group's

    @property
    def config(self) -> str:
        """Its overrides but the seed: what a run of the same config on another seed shares with it."""
        return " ".join(item for item in self.overrides if item.split("=", 1)[0].lstrip("+~") != "trainer.seed")

    @property
    def classes(self) -> list[str]:
        return [c[2:] for c in self.oof.columns if c.startswith("p_")]

    @property
    def name(self) -> str:
        return " ".join(self.changes) or (f"{BASELINE}: {' '.join(self.baseline)}" if self.baseline else BASELINE)


def _overrides(run: Run) -> dict[str, str]:
    """What a run was told beyond its experiment's file, but where runs go and the experiment itself (its tag says
    it, whether it came as ``experiment=m5`` on the command line or from a study)."""
    return {k.removeprefix("override."): v for k, v in run.data.tags.items()
            if k.startswith("override.") and k != "override.experiment"
            and not k.removeprefix("override.").lstrip("+~").startswith(NOT_A_CHANGE)}


def _config(run: Run) -> dict[str, str]:
    """The config a run computed with, as it logged it (MLflow params: ``group.key``), but where runs go. Keys with a
    ``/`` or without a group (what MLflow logged from a model's settings before they became an artifact) are not
    config."""
    return {k: v for k, v in run.data.params.items() if "." in k and "/" not in k and not k.startswith(NOT_A_CHANGE)}


def _edited(run: Run, given: dict[str, str], members: list[Run], overrides: list[dict[str, str]]) -> list[str]:
    """Where ``run``'s logged config differs from that of the newest run with the same overrides (an experiment file
    edited between them, e.g. m6 given a new default): its own values of the newest run's keys, ``None`` for a key
    it lacks (a key added since, absent = null). Empty for the newest run itself and for true replicates."""
    same = [m for m, o in zip(members, overrides) if o == given]
    newest = max(same, key=lambda m: m.info.start_time or 0)
    if newest is run:
        return []
    mine, theirs = _config(run), _config(newest)
    return [f"{k}={mine.get(k, 'None')}" for k, v in sorted(theirs.items()) if mine.get(k, "None") != v]


def _changes(given: dict[str, str], reference: dict[str, str]) -> tuple[str, ...]:
    """What a run overrides beyond ``reference``, and the reference's overrides it lacks (as ``key=(default)``)."""
    return tuple(sorted([f"{k}={v}" for k, v in given.items() if reference.get(k) != v]
                        + [f"{k}=(default)" for k in reference if k not in given]))


def _predictions(client: MlflowClient, run: Run) -> pd.DataFrame | None:
    """A parent's out-of-fold predictions (None if it logged none)."""
    if OOF_FILE not in {a.path for a in client.list_artifacts(run.info.run_id)}:
        return None
    return pd.read_csv(client.download_artifacts(run.info.run_id, OOF_FILE))


def load_groups(client: MlflowClient, study: str, experiment: str | tuple[str, ...] | None = None,
                baseline: tuple[str, ...] = (), pool: bool = False) -> dict[tuple, list[Arm]]:
    """FINISHED cross-validation parents of ``study`` (of ``experiment`` only, if given) that logged out-of-fold
    predictions, grouped by :data:`GROUP_TAGS`; in each group the baseline first, then by start time. With
    ``baseline`` (``key=value`` overrides) only the groups holding a run with exactly those beyond the common ones.
    Several experiments are grouped together (the experiment is then a change; the first is the reference). With
    ``pool`` one recipe's parents on disjoint folds of one split stand as one (:mod:`melanoma_lab.reporting.pooling`)."""
    experiments = (experiment,) if isinstance(experiment, str) else tuple(experiment or ())
    across = len(experiments) > 1
    if across and not any(item.startswith("experiment=") for item in baseline):
        baseline = (f"experiment={experiments[0]}", *baseline)
    named = dict(item.split("=", 1) for item in baseline)
    found = client.get_experiment_by_name(study)
    if found is None:
        raise LookupError(f"no MLflow experiment named {study!r}: cross-validate first "
                          "(python -m melanoma_lab experiment=... study.cv_folds=K)")
    query = "attributes.status = 'FINISHED' and tags.cv_folds != ''"
    if len(experiments) == 1:
        query += f" and tags.experiment = '{experiments[0]}'"
    runs = [r for r in client.search_runs([found.experiment_id], query, max_results=5000) if "fold" not in r.data.tags
            and (not experiments or r.data.tags.get("experiment") in experiments)]  # MLflow has no IN for tags
    tables = {r.info.run_id: _predictions(client, r) for r in runs}
    runs = [r for r in runs if tables[r.info.run_id] is not None]  # nothing to compare without predictions
    if pool:
        runs = pool_parents(runs, tables, _config, _overrides)
    by_group: dict[tuple, list[Run]] = {}
    keys = [tuple(("+".join(experiments) if t == "experiment" and across else run.data.tags.get(t, ""))
                  for t in GROUP_TAGS) for run in runs]
    for run, key in zip(runs, _on_most_folds(keys)):
        by_group.setdefault(key, []).append(run)
    groups = {}
    for key, members in by_group.items():
        overrides = [_overrides(r) | ({"experiment": r.data.tags.get("experiment", "")} if across else {})
                     for r in members]
        reference = dict(set.intersection(*(set(o.items()) for o in overrides))) | named
        arms = []
        for run, given in zip(members, overrides):
            oof = run.oof if is_pooled(run) else tables[run.info.run_id]
            metrics = dict(run.data.metrics)
            changes = tuple(sorted(set(_changes(given, reference)) | set(_edited(run, given, members, overrides))))
            arms.append(Arm(run.info.run_id, changes, oof, metrics,
                            dict(run.data.tags), run.info.start_time or 0, run.data.params.get("dataset.melanoma_class"),
                            tuple(baseline), tuple(sorted(f"{k}={v}" for k, v in given.items())),
                            run.data.tags.get("cv_run_folds", "")))
        if arms and (not baseline or any(not a.changes for a in arms)):  # baseline: on the most folds, then oldest
            groups[key] = sorted(arms, key=lambda a: (bool(a.changes), -len(fold_set(a.folds)), a.start_time))
    if not groups:
        raise LookupError(f"{study!r} has no FINISHED cross-validation runs with out-of-fold predictions"
                          + (f" of experiment {experiment!r}" if experiment else "")
                          + (f" among which one overrides exactly {' '.join(baseline)} beyond the runs' common "
                             "overrides (the --baseline)" if baseline else ""))
    return groups


def _on_most_folds(keys: list[tuple]) -> list[tuple]:
    """Each group key with its folds (:data:`FOLDS`) replaced by those of the key on the most folds of the same split
    (the other tags) that holds all of its own; a key whose folds no other holds, or that names none, is kept."""
    split = lambda key: key[:FOLDS] + key[FOLDS + 1:]  # noqa: E731
    out = []
    for key in keys:
        mine = fold_set(key[FOLDS])
        if not mine:
            out.append(key)
            continue
        holders = [fold_set(k[FOLDS]) for k in keys if split(k) == split(key) and mine <= fold_set(k[FOLDS])]
        most = min(holders, key=lambda f: (-len(f), sorted(f)))  # holders hold key's own folds at least
        out.append(key[:FOLDS] + (",".join(map(str, sorted(most))),) + key[FOLDS + 1:])
    return out


def melanoma_auc(labels: np.ndarray, probs: np.ndarray, melanoma: int) -> float:
    return binary_auc(labels == melanoma, probs[:, melanoma])


def paired_deltas(base: pd.DataFrame, other: pd.DataFrame, melanoma: int | None, min_images: int, samples: int,
                  confidence: float, seed: int = 0) -> dict[str, float]:
    """``other`` minus ``base`` on the images both scored: balanced accuracy (frequent classes) and melanoma AUC,
    each with a percentile bootstrap interval (the same draws of split groups for both runs; of images where a run
    logged no group), and ``resampled``, what a replicate drew."""
    paths = common_paths([base, other])
    a, b = base.set_index("path").loc[paths], other.set_index("path").loc[paths]
    labels = a["label"].to_numpy()
    if not np.array_equal(labels, b["label"].to_numpy()):
        raise ValueError("the runs label the same image differently: were they cross-validated on the same data?")
    pa, pb = probabilities(a.reset_index()), probabilities(b.reset_index())
    frequent = np.flatnonzero(np.bincount(labels, minlength=pa.shape[1]) >= min_images)
    scores = {"balanced_accuracy_frequent": lambda y, p: frequent_balanced_accuracy(y, p.argmax(axis=1), frequent)}
    if melanoma is not None:
        scores["melanoma_roc_auc"] = lambda y, p: melanoma_auc(y, p, melanoma)
    groups = groups_of([base, other], paths)
    draws = replicate_rows(np.arange(len(labels)) if groups is None else groups, samples, seed)
    out: dict = {"images": float(len(labels)), "resampled": resampled(groups, len(labels))}
    for name, score in scores.items():
        out[f"delta_{name}"] = score(labels, pb) - score(labels, pa)
        deltas = np.array([score(labels[i], pb[i]) - score(labels[i], pa[i]) for i in draws])
        out[f"delta_{name}_low"], out[f"delta_{name}_high"] = percentile_interval(deltas, confidence)
    return out


def ablation_table(arms: list[Arm], min_images: int, samples: int, confidence: float) -> pd.DataFrame:
    """One row per run of a group: its change, its out-of-fold scores and its paired differences from the
    (first) baseline."""
    base = arms[0]
    if base.changes:
        raise LookupError(f"no baseline among these runs (each overrides something the others do not: "
                          f"{', '.join(a.name for a in arms)}): cross-validate the experiment with only their "
                          "common overrides too")
    classes, melanoma = base.classes, base.melanoma_class
    index = classes.index(melanoma) if melanoma in classes else None
    alone = len(arms) == 1  # nothing to compare with: its own overrides are all "common"
    rows = []
    shared = set(base.oof["path"])
    for arm in arms:
        oof, metrics = arm.oof, arm.metrics
        beyond = ~oof["path"].isin(shared)
        if beyond.any() and not beyond.all():  # it ran folds beyond the baseline's: scored on the images they share
            oof = oof[~beyond]
            metrics = {k: v for k, v in metrics.items() if not k.startswith(("oof_melanoma_alert", SHIFT_DROPS))}
            metrics |= pooled_alert(oof, arm.melanoma_class)
        labels, probs = oof["label"].to_numpy(), probabilities(oof)
        frequent = np.flatnonzero(np.bincount(labels, minlength=len(classes)) >= min_images)
        change = ALONE if alone else arm.name if arm is base or arm.changes else f"{BASELINE} (replicate)"
        row = {"change": change + (f" (folds {arm.folds})" if arm.folds != base.folds else ""),
               "run_id": arm.run_id, "code_version": arm.tags.get("code_version", ""), "images": len(labels),
               "folds": arm.folds, "same_folds": arm.folds == base.folds,
               "baseline_config": arm is base or not arm.changes,  # the baseline or a repeat run of it
               "config": arm.config,
               "balanced_accuracy_frequent": frequent_balanced_accuracy(labels, probs.argmax(axis=1), frequent),
               "frequent_classes": len(frequent),
               "melanoma_roc_auc": melanoma_auc(labels, probs, index) if index is not None else float("nan"),
               "alert_sensitivity": metrics.get("oof_melanoma_alert_sensitivity", float("nan")),
               "alert_specificity": metrics.get("oof_melanoma_alert_specificity", float("nan")),
               "fold_seconds": metrics.get("cv_mean_run_seconds", float("nan")),
               **{key.removeprefix("oof_"): value for key, value in metrics.items()
                  if key.startswith(SHIFT_DROPS)}}
        if arm is not base and not beyond.all():  # a run on other folds only shares no image with it
            row |= paired_deltas(base.oof, oof, index, min_images, samples, confidence)
        rows.append(row)
    return pd.DataFrame(rows)


def decided_on(arms: list[Arm]) -> list[str]:
    """The runs of a group whose every out-of-fold image was compared with the baseline's: what a decision read from
    its table was taken on. A baseline on more folds than every other run is not (only its images on their folds
    were), nor is a group of one."""
    if len(arms) < 2:
        return []
    base = set(arms[0].oof["path"])
    seen = set().union(*(base & set(arm.oof["path"]) for arm in arms[1:]))
    return [arm.run_id for arm in arms if set(arm.oof["path"]) <= seen]
