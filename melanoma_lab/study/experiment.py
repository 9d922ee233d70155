"""One experiment end to end: prepare data, train, evaluate, and log it all to one MLflow run."""

from __future__ import annotations

import hashlib
import json
import logging
import resource
import shutil
import time
from functools import partial
from pathlib import Path

import keras
import numpy as np
from omegaconf import DictConfig, OmegaConf

from melanoma_lab.evaluation import plots
from melanoma_lab.data.audit import summary
from melanoma_lab.components.callbacks import TENSORBOARD
from melanoma_lab.config.schema import validate
from melanoma_lab.data.contamination import clean_test_metrics
from melanoma_lab.data.overlap import FINGERPRINTS, training_fingerprints
from melanoma_lab.data.pipeline import PreparedData
from melanoma_lab.evaluation.fit_gap import clean_train_metrics, gaps
from melanoma_lab.evaluation.metrics import calibrate_alert, evaluate
from melanoma_lab.study.evaluation_log import (HELD_OUT_PREDICTIONS, evaluation_metrics, headline, log_alert,
                                              log_evaluation)
from melanoma_lab.evaluation.inference import predict_probabilities
from melanoma_lab.evaluation.ood import InputCheck
from melanoma_lab.study.preparation import AuditedData, DataRecipe, load_audited_data, prepare_data
from melanoma_lab.serving.classifier import log_classifier, model_metadata
from melanoma_lab.evaluation.subgroups import log_subgroups
from melanoma_lab.tracking.identity import finished_twin, make_tracker, override_tags, run_identity, study_tags
from melanoma_lab.tracking.lineage import log_inputs
from melanoma_lab.tracking.run import RunTracker, flatten
from melanoma_lab.runtime import runtime, seed_everything
from melanoma_lab.training.fit import TrainingRecipe, train_model
from melanoma_lab.data.staging import write_atomically

log = logging.getLogger(__name__)
UNTRACKED = "untracked"  # the backup folder of a run with tracking.enabled=false


def resume_or_restart(resume: bool, tracker: RunTracker, identity: dict[str, str], backups: Path) -> None:
    """Every run keeps an epoch backup in ``backups/<run id>`` until training ends. ``resume`` (``trainer.resume``)
    continues the newest interrupted run of ``identity`` from its backup; without it a new run starts, and the
    backups left by interrupted runs are named in a warning (never restored into another run)."""
    if resume:
        resumed = tracker.resume_unfinished(identity)
        if resumed:
            log.warning("resuming run %s from its last finished epoch (backup %s)", resumed, backups / resumed)
        elif tracker.enabled:
            log.warning("trainer.resume=true: no interrupted run with the same config, data and code; "
                        "starting a new run")
        return
    left = sorted(path.name for path in backups.glob("*")) if backups.is_dir() else []
    if left:
        log.warning("run(s) %s of this config left an epoch backup (interrupted, or still running); starting over "
                    "in a new run (trainer.resume=true continues the newest interrupted run instead)", ", ".join(left))
    shutil.rmtree(backups / UNTRACKED, ignore_errors=True)  # without tracking there is no run id to tell them apart


def frequent_classes(data: PreparedData, min_images: int) -> np.ndarray:
    """Indices of the classes with at least ``min_images`` of the run's labelled images (training split before
    rebalancing, validation and held-out fold: for a fold run, every image of the cross-validation, whose out-of-fold
    balanced accuracy averages over the same classes): one fixed set for every split the run scores."""
    counts = np.array([data.counts_before[c] for c in data.classes])
    for part in (data.validation, data.held_out):
        if part is not None:
            counts += np.bincount(part.labels, minlength=len(data.classes))
    return np.flatnonzero(counts >= min_images)


def run_experiment(cfg: DictConfig, output_dir: str | Path, overrides: list[str] | None = None,
                   fold: int | None = None, parent_run_id: str | None = None,
                   audited: AuditedData | None = None) -> dict[str, float]:
    """Run the experiment described by ``cfg`` (on cross-validation ``fold`` if given); returns the
    final validation and test metrics."""
    started = time.perf_counter()
    validate(cfg)
    keras.backend.clear_session()  # a fresh graph per run, also for several runs in one process (sweeps)
    seed_everything(cfg.trainer.seed, cfg.trainer.deterministic)  # before the backend starts (GPU determinism)
    processes = runtime().join(cfg.trainer.strategy)  # multi_worker: all processes of the run meet here
    if processes.count > 1 and (cfg.tracking.skip_finished or cfg.trainer.resume):
        # only the primary process sees the store: a reuse or resume decided there alone would leave the others
        # waiting for it forever
        log.warning("trainer.strategy=%s with %d processes: every process trains from scratch (no reuse of a "
                    "FINISHED run, no resume)", cfg.trainer.strategy, processes.count)
        cfg = OmegaConf.merge(cfg, {"tracking": {"skip_finished": False}, "trainer": {"resume": False}})
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    audited = audited or load_audited_data(cfg.dataset, cfg.audit, output_dir)
    catalog, report, files = audited.catalog, audited.report, audited.files

    resolved = OmegaConf.to_container(cfg, resolve=True)
    identity = run_identity(resolved, files, fold)
    run_name = cfg.name if fold is None else f"{cfg.name}-fold{fold + 1}"
    tracker = make_tracker(cfg.tracking, cfg.paths.mlruns_dir, run_name,
                           {**study_tags(cfg.study, cfg.dataset.name, cfg.trainer.seed), "experiment": cfg.name,
                            "output_dir": str(output_dir.resolve()), **identity, **override_tags(overrides),
                            "runtime.processes": str(processes.count)},
                           parent_run_id, processes.primary, trains=True)
    previous = finished_twin(tracker, identity, cfg.tracking.skip_finished, cfg.study.get("launch"),
                             needs_model=cfg.tracking.log_model)
    if previous is not None:
        return previous
    backups = Path(cfg.paths.cache_dir).resolve() / "resume" / hashlib.sha256(
        json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    resume_or_restart(cfg.trainer.resume, tracker, identity, backups)
    with tracker:
        params = flatten(resolved)
        if tracker.resumed:  # params are write-once: the interrupted attempt may have run without trainer.resume
            params.pop("trainer.resume")
        tracker.log_params(params)
        tracker.log_dict(resolved, "config/config.yaml")
        tracker.log_text("\n".join(overrides or []), "config/overrides.txt")
        tracker.log_dict(report, "data_audit.json")
        tracker.log_text(summary(report), "data_audit.txt")

        data = prepare_data(DataRecipe(cfg.dataset, cfg.imbalance, cfg.audit, cfg.study, cfg.trainer.seed,
                                       cfg.paths.cache_dir), catalog, files, fold)
        if tracker.enabled:  # lineage: the images behind every number of this run (the UI's Dataset column)
            log_inputs(tracker.client, tracker.run_id, {
                "training": data.train.files, "validation": data.validation.files,
                "held_out": None if data.held_out is None else data.held_out.files,
                "test": None if data.test is None else data.test.files}, cfg.dataset.name)
        tracker.log_table(training_fingerprints({"training": data.train.files, "validation": data.validation.files}),
                          FINGERPRINTS)  # what an external evaluation of this model is audited against
        tracker.log_metrics({"train_images": len(data.train.labels), "val_images": len(data.validation.labels),
                             "test_images": 0 if data.test is None else len(data.test.labels),
                             "skipped_unreadable": len(data.skipped), "test_unscored_images": len(data.test_unscored)})
        if data.skipped:
            tracker.log_dict(data.skipped, "skipped_unreadable.json")
        if data.test is not None or len(data.test_unscored):
            tracker.log_table(data.test_unscored, "evaluation/test_unscored.csv")
        tracker.log_figure(plots.class_distribution(data.counts_before, data.counts_after),
                           "data/class_distribution.png")
        tracker.log_figure(plots.sample_grid(data.train.images, data.train.labels, data.classes),
                           "data/samples_per_class.png")

        recipe = TrainingRecipe(*map(cfg.get, TrainingRecipe._fields))  # the groups it names, nothing else
        model, history = train_model(recipe, data, tracker, output_dir, backups / (tracker.run_id or UNTRACKED))
        if (output_dir / TENSORBOARD).is_dir():  # the optional TensorBoard callback's logs
            tracker.log_folder(output_dir / TENSORBOARD, TENSORBOARD)
        tracker.log_figure(plots.learning_curves(history, cfg.name), "learning_curves.png")
        tracker.log_dict(history, "history.json")

        final_step = len(history["loss"])
        results: dict[str, float] = {}
        scored = {}  # prefix -> its evaluation
        frequent = frequent_classes(data, cfg.evaluation.frequent_class_images)
        splits = [("val", data.validation)] + [(prefix, part) for prefix, part in
                                               (("fold", data.held_out), ("test", data.test)) if part is not None]
        input_check = InputCheck.fit(data.train.images, data.validation.images, cfg.evaluation.ood_flag_rate,
                                     cfg.trainer.seed)  # its threshold chosen on validation, like the alert's
        tracker.log_metrics({f"{prefix}_ood_flagged_fraction": input_check.flag_rate(part.images)
                             for prefix, part in splits}, step=final_step)
        for prefix, part in splits:
            probabilities = predict_probabilities(model, part.images, cfg.dataset.batch_size, cfg.evaluation.tta)
            if prefix == "val":  # the alert threshold is chosen on validation only, never on Test
                alert = calibrate_alert(part.labels, probabilities, data.classes, cfg.dataset.melanoma_class,
                                        cfg.evaluation.fixed_sensitivity)
                log_alert(tracker, alert)
            score = partial(evaluate, classes=data.classes, melanoma_class=cfg.dataset.melanoma_class,
                            fixed_specificity=cfg.evaluation.fixed_specificity,
                            fixed_sensitivity=cfg.evaluation.fixed_sensitivity,
                            calibration_bins=cfg.evaluation.calibration_bins, alert_threshold=alert.threshold,
                            frequent=frequent)  # <prefix>_balanced_accuracy_frequent: the sweepers' objective
            result = scored[prefix] = score(part.labels, probabilities)
            log_subgroups(tracker, prefix, part.files, part.labels, probabilities, data.classes,
                          cfg.dataset.melanoma_class, alert.threshold, cfg.evaluation)
            metrics = evaluation_metrics(result, prefix, history)
            if prefix == "test":  # also on the Test images without a Train twin
                metrics |= clean_test_metrics(part.files, part.labels, probabilities, score)
            predictions = log_evaluation(tracker, result, metrics, prefix, part.files, data.classes,
                                         cfg.dataset.melanoma_class, cfg.evaluation.calibration_bins, final_step)
            if fold is not None and prefix == ("fold" if data.held_out is not None else "val"):
                write_atomically(output_dir / HELD_OUT_PREDICTIONS,
                                 predictions.assign(alert_threshold=alert.threshold).to_csv(index=False))
            results |= metrics
        # the over-fitting gap: the evaluated weights and views on the original training images, not Keras' running
        # accuracy on augmented, generated, dropout-on batches (evaluation.fit_gap)
        trained = clean_train_metrics(model, data.train, cfg.dataset.batch_size, cfg.evaluation.tta,
                                      cfg.evaluation.train_pass_images, cfg.trainer.seed)
        trained |= gaps(trained, scored["val"].metrics)
        tracker.log_metrics(trained, step=final_step)
        results |= trained
        if cfg.tracking.log_model:
            metadata = model_metadata(cfg.dataset, cfg.evaluation, data.classes, alert) | input_check.metadata()
            tracker.log_model(lambda: log_classifier(model, data.validation.images[0], metadata))
        tracker.log_metrics(headline(results), step=final_step)
        costs = {"run_seconds": time.perf_counter() - started, "tracking_seconds": tracker.seconds,
                 "process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        tracker.log_metrics(costs, step=final_step)
        results |= costs
        write_atomically(output_dir / "metrics.json", json.dumps(results, indent=2))
    return results
