"""K-fold cross-validation of one experiment: a parent MLflow run with one child run per fold.

Folds are stratified by class and grouped by content (byte-identical and near-identical images share a
fold); each fold's Augmentor images derive from that fold's training part only. With ``study.nested`` (the
default) each fold chooses its best epoch and alert threshold on an inner validation split of its training part
and only scores the outer fold (``fold_<metric>``). The parent run gets the mean and standard deviation over folds
of every validation and fold metric (``cv_mean_<metric>``, ``cv_sd_<metric>``), a ``cv_folds.csv`` table, the
out-of-fold predictions (``oof_predictions.csv``, :mod:`melanoma_lab.study.oof`) with their metrics (``oof_<metric>``),
and with ``study.ensemble`` the fold ensemble as its model (:mod:`melanoma_lab.study.ensemble`). An ensemble's
calibration slice (``study.calibration_fraction`` of Train, :mod:`melanoma_lab.data.calibration_slice`) is held out
before the folds are made: no fold trains, validates or scores on it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from melanoma_lab.config.schema import ConfigError
from melanoma_lab.data.calibration_slice import identity_tags as calibration_tags
from melanoma_lab.study.ensemble import check_ensemble, log_ensemble
from melanoma_lab.study.evaluation_log import headline
from melanoma_lab.study.experiment import run_experiment
from melanoma_lab.tracking.identity import (finished_twin, make_tracker, override_tags, reusable, run_identity,
                                            study_tags)
from melanoma_lab.study.oof import fold_predictions, oof_metrics, out_of_fold
from melanoma_lab.reporting.selection import OOF_FILE
from melanoma_lab.study.preparation import load_audited_data
from melanoma_lab.tracking.run import flatten
from melanoma_lab.data.staging import write_atomically
from melanoma_lab.study.shift_check import log_shift_check, oof_shift_table


def shift_check(parent, runs: list, selected: list[int], oof: pd.DataFrame, classes: list[str],
                evaluation: DictConfig, melanoma_class: str, log_model: bool) -> dict[str, float]:
    """The shift check (:mod:`melanoma_lab.study.shift_check`) of this CV's fold models on their out-of-fold images,
    logged on the parent; nothing (and a warning) where the fold models were not logged (``log_model``:
    ``tracking.log_model``)."""
    if any(run is None for run in runs) or not log_model:
        log.warning("study.shift_check: skipped, the fold models are not logged (tracking.enabled and "
                    "tracking.log_model must be true)")
        return {}
    models = {number: f"runs:/{run.info.run_id}/model" for number, run in zip(selected, runs)}
    table = oof_shift_table(oof, models, classes, evaluation, melanoma_class)
    return log_shift_check(table, parent.log_metrics, parent.log_table, parent.log_text)

log = logging.getLogger(__name__)


def summarise_folds(fold_metrics: list[dict[str, float]],
                    fold_numbers: list[int] | None = None) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per-fold table and ``cv_mean_`` / ``cv_sd_`` of every metric that all folds have."""
    table = pd.DataFrame(fold_metrics)
    table.insert(0, "fold", fold_numbers or range(1, len(table) + 1))
    common = [c for c in table.columns if c != "fold" and table[c].notna().all()]
    summary = {f"cv_mean_{c}": float(table[c].mean()) for c in common}
    summary |= {f"cv_sd_{c}": float(table[c].std(ddof=1)) if len(table) > 1 else 0.0 for c in common}
    return table, summary


def run_cross_validation(cfg: DictConfig, output_dir: str | Path, overrides: list[str] | None = None,
                         parent_run_id: str | None = None) -> dict[str, float]:
    """Run ``study.cv_folds`` folds of ``cfg`` (under ``parent_run_id``, e.g. a sweep's, if given); returns the
    cross-validation summary metrics."""
    output_dir = Path(output_dir)
    folds = cfg.study.cv_folds
    selected = list(cfg.study.cv_run_folds or range(1, folds + 1))
    if not set(selected) <= set(range(1, folds + 1)):
        raise ConfigError(f"study.cv_run_folds={selected} must list fold numbers from 1 to study.cv_folds={folds}")
    check_ensemble(cfg.study, cfg.tracking)
    nested = bool(cfg.study.get("nested", False))
    audited = load_audited_data(cfg.dataset, cfg.audit, output_dir)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    identity = run_identity(resolved, audited.files) | {
        "run_kind": "cv", "cv_folds": str(folds), "cv_run_folds": ",".join(map(str, sorted(set(selected)))),
        "nested": str(nested).lower(), "ensemble": str(bool(cfg.study.get("ensemble", False))).lower(),
        **calibration_tags(cfg.study)}
    name = f"{cfg.name}-cv{folds}" + ("" if len(selected) == folds else "-folds" + "".join(map(str, selected)))
    parent = make_tracker(cfg.tracking, cfg.paths.mlruns_dir, name,
                          {**study_tags(cfg.study, cfg.dataset.name, cfg.trainer.seed), "experiment": cfg.name,
                           **identity, **override_tags(overrides)}, parent_run_id)
    ensemble = bool(cfg.study.get("ensemble", False))
    previous = finished_twin(parent, identity, cfg.tracking.skip_finished, cfg.study.get("launch"),
                             needs_model=ensemble)
    if previous is not None:
        return previous
    started = time.perf_counter()
    with parent:
        parent.log_params(flatten(resolved))
        parent.log_dict(resolved, "config/config.yaml")
        parent.log_text("\n".join(overrides or []), "config/overrides.txt")
        parent.log_dict(audited.report, "data_audit.json")
        fold_metrics, predictions, runs = [], {}, []
        for number in selected:
            fold_dir = output_dir / f"fold_{number}"
            metrics = run_experiment(cfg, fold_dir, overrides, fold=number - 1, parent_run_id=parent.run_id,
                                     audited=audited)
            fold_metrics.append({k: v for k, v in metrics.items()
                                 if k.startswith(("val_", "final_val_", "train_val_", "fold_")) or k == "run_seconds"})
            run = parent.finished_run_with(reusable(run_identity(resolved, audited.files, number - 1),  # just run,
                                                    cfg.tracking.log_model))                       # or reused
            runs.append(run)
            predictions[number] = fold_predictions(fold_dir, run, parent, nested)
        table, summary = summarise_folds(fold_metrics, selected)
        oof = out_of_fold(predictions)
        summary |= oof_metrics(oof, audited.catalog.classes, cfg.evaluation, cfg.dataset.melanoma_class)
        parent.set_tags({k: v for run in runs if run is not None for k, v in run.data.tags.items()
                         if k.startswith("runtime.")})  # backend, device, precision: as the folds ran
        parent.set_tags({"oof_threshold_chosen_on": "inner validation split of each fold" if nested
                         else "the scored fold itself (study.nested=false: optimistic)"})
        parent.log_metrics(summary)
        parent.log_table(table, "cv_folds.csv")
        parent.log_table(oof, OOF_FILE)
        write_atomically(output_dir / "cv_folds.csv", table.to_csv(index=False))
        write_atomically(output_dir / OOF_FILE, oof.to_csv(index=False))
        if ensemble:
            summary |= log_ensemble(cfg.dataset, cfg.evaluation, cfg.study, cfg.trainer.seed, parent, runs, oof,
                                    audited.catalog.classes, audited.files)
        if cfg.study.get("shift_check", False):
            summary |= shift_check(parent, runs, selected, oof, audited.catalog.classes, cfg.evaluation,
                                   cfg.dataset.melanoma_class, cfg.tracking.log_model)
        summary["cv_seconds"] = time.perf_counter() - started  # folds (cv_mean_run_seconds each) and ensemble
        parent.log_metrics({"cv_seconds": summary["cv_seconds"]} | headline(summary))
    return summary
