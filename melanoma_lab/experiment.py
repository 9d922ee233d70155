"""One experiment end to end: audit, split, rebalance, train, evaluate, and log it all to MLflow."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from melanoma_lab import plots
from melanoma_lab.audit import apply_policy, audit_catalog, summary, write_report
from melanoma_lab.augmentation import build_augmentation
from melanoma_lab.config import validate
from melanoma_lab.data.catalog import Catalog, fingerprint
from melanoma_lab.data.pipeline import DecodedImages, decode, make_dataset
from melanoma_lab.data.sources import load_catalog
from melanoma_lab.data.split import content_groups, fold_split, train_val_split
from melanoma_lab.evaluation import Evaluation, evaluate, reliability_table
from melanoma_lab.imbalance import balanced_class_weights, generate_augmentor_images
from melanoma_lab.tracking import RunTracker, flatten, git_state, package_versions, tracking_uri
from melanoma_lab.training import (
    ValidationMetrics,
    best_epoch,
    build_callbacks,
    build_loss,
    fit,
    learning_rate,
    predict_probabilities,
    seed_everything,
    set_precision,
)

log = logging.getLogger(__name__)


class DataLeakError(RuntimeError):
    """Something from the validation split (or derived from it) reached training."""


class UnreadableImagesError(RuntimeError):
    """Image files failed to decode and ``dataset.on_unreadable=fail``."""


@dataclass
class PreparedData:
    classes: list[str]
    train: DecodedImages
    validation: DecodedImages
    test: DecodedImages | None
    counts_before: dict[str, int]
    counts_after: dict[str, int]
    skipped: dict[str, str]


def check_no_leak(train: pd.DataFrame, validation: pd.DataFrame) -> None:
    """Raise :class:`DataLeakError` unless training is disjoint from validation (files, bytes, parents)."""
    originals = train[train["source"] == "original"]
    shared_paths = set(train["path"]) & set(validation["path"])
    shared_bytes = set(originals["sha256"]) & set(validation["sha256"])
    foreign_parents = set(train.loc[train["source"] != "original", "parent"]) - set(originals["path"])
    if shared_paths or shared_bytes or foreign_parents:
        raise DataLeakError(f"validation leaks into training: {len(shared_paths)} shared files, "
                            f"{len(shared_bytes)} shared contents, {len(foreign_parents)} generated images "
                            "derived from non-training images")


def _decode(files: pd.DataFrame, classes: list[str], size: int, on_unreadable: str) -> DecodedImages:
    decoded = decode(files, classes, size)
    if decoded.failures and on_unreadable == "fail":
        listing = "\n".join(f"  {path}: {reason}" for path, reason in decoded.failures.items())
        raise UnreadableImagesError(f"{len(decoded.failures)} files are not readable images:\n{listing}\n"
                                    "Remove them, or set dataset.on_unreadable=skip")
    for path, reason in decoded.failures.items():
        log.warning("skipping unreadable image %s (%s)", path, reason)
    return decoded


def prepare_data(cfg: DictConfig, catalog: Catalog, files: pd.DataFrame, fold: int | None = None) -> PreparedData:
    """Split (train/validation, or cross-validation ``fold`` of ``study.cv_folds``), rebalance the training
    split only, and decode everything once."""
    seed = cfg.trainer.seed
    labelled = files[files["split"] == "train"].reset_index(drop=True)
    if fold is None:
        train, validation = train_val_split(labelled, cfg.dataset.val_fraction, seed)
    else:
        train, validation = fold_split(labelled, cfg.study.cv_folds, fold, seed)
    counts_before = {c: int((train["label"] == c).sum()) for c in catalog.classes}
    if cfg.imbalance.strategy == "augmentor":
        generated = generate_augmentor_images(train, cfg.imbalance, cfg.paths.cache_dir, seed)
        train = pd.concat([train, generated], ignore_index=True)
    check_no_leak(train, validation)
    size, policy = cfg.dataset.image_size, cfg.dataset.on_unreadable
    test_files = files[files["split"] == "test"]
    decoded = [_decode(part, catalog.classes, size, policy) for part in (train, validation, test_files)]
    skipped = {path: reason for part in decoded for path, reason in part.failures.items()}
    return PreparedData(
        classes=catalog.classes, train=decoded[0], validation=decoded[1],
        test=decoded[2] if len(decoded[2].labels) else None, counts_before=counts_before,
        counts_after={c: int((decoded[0].files["label"] == c).sum()) for c in catalog.classes}, skipped=skipped)


def evaluation_metrics(result: Evaluation, prefix: str, history: dict[str, list]) -> dict[str, float]:
    """``<prefix>_<metric>``; a name Keras already logs per epoch (val_accuracy) gets a ``final_`` prefix."""
    named = {f"{prefix}_{k}": v for k, v in result.metrics.items()}
    return {(f"final_{k}" if k in history else k): v for k, v in named.items()}


def predictions_table(result: Evaluation, paths: pd.Series, classes: list[str]) -> pd.DataFrame:
    """One row per image: path, true label index, and the probability of each class."""
    table = pd.DataFrame(result.probabilities, columns=[f"p_{c}" for c in classes])
    table.insert(0, "label", result.labels)
    table.insert(0, "path", paths.to_numpy())
    return table


def _log_evaluation(tracker: RunTracker, result: Evaluation, metrics: dict[str, float], prefix: str,
                    paths: pd.Series, classes: list[str], bins: int, step: int) -> None:
    tracker.log_metrics(metrics, step=step)
    tracker.log_table(predictions_table(result, paths, classes), f"evaluation/{prefix}_predictions.csv")
    tracker.log_table(result.per_class, f"evaluation/{prefix}_per_class.csv")
    tracker.log_figure(plots.confusion_matrices(result.confusion, classes, prefix),
                       f"evaluation/{prefix}_confusion_matrix.png")
    tracker.log_figure(plots.roc_curves(result.labels, result.probabilities, classes, prefix),
                       f"evaluation/{prefix}_roc_curves.png")
    tracker.log_figure(plots.reliability_diagram(reliability_table(result.labels, result.probabilities, bins),
                                                 prefix), f"evaluation/{prefix}_reliability.png")
    tracker.log_dict({"classes": classes, "confusion_matrix": result.confusion.tolist()},
                     f"evaluation/{prefix}_confusion_matrix.json")


def train_model(cfg: DictConfig, data: PreparedData, tracker: RunTracker,
                output_dir: Path) -> tuple[keras.Model, dict[str, list[float]]]:
    """Build the configured model and optimizer and fit it on the prepared training split."""
    seed, batch, size = cfg.trainer.seed, cfg.dataset.batch_size, cfg.dataset.image_size
    num_classes = len(data.classes)
    set_precision(cfg.trainer.precision)
    train_ds = make_dataset(data.train, num_classes, batch, True, seed, build_augmentation(cfg.augmentation, seed))
    model = instantiate(cfg.model, input_shape=(size, size, 3), num_classes=num_classes, _convert_="all")
    loss = build_loss(cfg.trainer)
    rate = learning_rate(cfg.optimizer.learning_rate, cfg.trainer, math.ceil(len(data.train.labels) / batch))
    optimizer = instantiate(cfg.optimizer, _partial_=True)(learning_rate=rate)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    class_weight = (balanced_class_weights(data.train.labels, num_classes)
                    if cfg.imbalance.strategy == "class_weight" else None)
    validation = ValidationMetrics(data.validation.images.astype(np.float32), data.validation.labels, num_classes,
                                   loss, batch)
    history = fit(model, train_ds, cfg.trainer, build_callbacks(cfg.trainer, output_dir, tracker, validation),
                  class_weight)
    return model, history


def config_hash(resolved: dict) -> str:
    """Hash of everything that can change a result (all groups but where files go and how runs are tracked)."""
    relevant = {k: v for k, v in resolved.items() if k not in ("paths", "tracking", "study")}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class AuditedData:
    """What every run (or fold) of one config shares: the catalog, its audit and the files to use."""

    catalog: Catalog
    report: dict
    files: pd.DataFrame  # after audit.conflict_policy, with a ``group`` column (copies share one)


def load_audited_data(cfg: DictConfig, output_dir: Path) -> AuditedData:
    """Scan and audit the dataset, write ``audit.json``, apply the conflict policy and group copies."""
    catalog = load_catalog(cfg.dataset, cfg.paths)
    report = audit_catalog(catalog, cfg.audit.near_duplicate_distance)
    write_report(report, cfg.audit.out or output_dir)
    log.info("\n%s", summary(report))
    files = apply_policy(catalog.files, report, cfg.audit.conflict_policy)
    files = files.assign(group=content_groups(files, report["near_duplicate_groups"]))
    return AuditedData(catalog, report, files)


def make_tracker(cfg: DictConfig, run_name: str, tags: dict[str, str], parent_run_id: str | None = None) -> RunTracker:
    """A run in the configured store and MLflow experiment, tagged for provenance."""
    provenance = {"study": cfg.study.name, "dataset": cfg.dataset.name, "seed": str(cfg.trainer.seed),
                  **git_state(Path.cwd()), **{f"version.{k}": v for k, v in package_versions().items()}}
    return RunTracker(cfg.tracking.enabled, tracking_uri(cfg.tracking.tracking_uri, cfg.paths.mlruns_dir),
                      cfg.tracking.experiment_name, run_name, Path(cfg.paths.mlruns_dir).resolve(),
                      provenance | tags, parent_run_id)


def finished_twin(cfg: DictConfig, tracker: RunTracker, identity: dict[str, str]) -> dict[str, float] | None:
    """Metrics of a FINISHED run with the same identity, when ``tracking.skip_finished`` allows reuse."""
    previous = tracker.finished_run_with(identity) if cfg.tracking.skip_finished else None
    if previous is None:
        return None
    log.info("skipping %s: run %s already FINISHED with the same config and data "
             "(tracking.skip_finished=false runs it again)", tracker.run_name, previous.info.run_id)
    return dict(previous.data.metrics)


def run_experiment(cfg: DictConfig, output_dir: str | Path, overrides: list[str] | None = None,
                   fold: int | None = None, parent_run_id: str | None = None,
                   audited: AuditedData | None = None) -> dict[str, float]:
    """Run the experiment described by ``cfg`` (on cross-validation ``fold`` if given); returns the
    final validation and test metrics."""
    validate(cfg)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    audited = audited or load_audited_data(cfg, output_dir)
    catalog, report, files = audited.catalog, audited.report, audited.files

    keras.backend.clear_session()  # a fresh graph per run, also for several runs in one process (sweeps)
    seed_everything(cfg.trainer.seed, cfg.trainer.deterministic)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    identity = {"config_hash": config_hash(resolved), "data_fingerprint": fingerprint(files)}
    if fold is not None:
        identity["fold"] = f"{fold + 1}/{cfg.study.cv_folds}"
    tracker = make_tracker(cfg, cfg.name if fold is None else f"{cfg.name}-fold{fold + 1}",
                           {"experiment": cfg.name, "output_dir": str(output_dir.resolve()), **identity},
                           parent_run_id)
    previous = finished_twin(cfg, tracker, identity)
    if previous is not None:
        return previous
    with tracker:
        tracker.log_params(flatten(resolved))
        tracker.log_dict(resolved, "config/config.yaml")
        tracker.log_text("\n".join(overrides or []), "config/overrides.txt")
        tracker.log_dict(report, "data_audit.json")
        tracker.log_text(summary(report), "data_audit.txt")

        data = prepare_data(cfg, catalog, files, fold)
        tracker.log_metrics({"train_images": len(data.train.labels), "val_images": len(data.validation.labels),
                             "test_images": 0 if data.test is None else len(data.test.labels),
                             "skipped_unreadable": len(data.skipped)})
        if data.skipped:
            tracker.log_dict(data.skipped, "skipped_unreadable.json")
        tracker.log_figure(plots.class_distribution(data.counts_before, data.counts_after),
                           "data/class_distribution.png")
        tracker.log_figure(plots.sample_grid(data.train.images, data.train.labels, data.classes),
                           "data/samples_per_class.png")

        model, history = train_model(cfg, data, tracker, output_dir)
        tracker.log_figure(plots.learning_curves(history, cfg.name), "learning_curves.png")
        tracker.log_dict(history, "history.json")

        final_step = len(history["loss"])
        results: dict[str, float] = {}
        splits = [("val", data.validation)] + ([("test", data.test)] if data.test is not None else [])
        for prefix, part in splits:
            probabilities = predict_probabilities(model, part.images, cfg.dataset.batch_size, cfg.evaluation.tta)
            result = evaluate(part.labels, probabilities, data.classes, cfg.dataset.melanoma_class,
                              cfg.evaluation.fixed_specificity, cfg.evaluation.fixed_sensitivity,
                              cfg.evaluation.calibration_bins, results.get("val_melanoma_alert_threshold"))
            metrics = evaluation_metrics(result, prefix, history)
            _log_evaluation(tracker, result, metrics, prefix, part.files["path"], data.classes,
                            cfg.evaluation.calibration_bins, final_step)
            results |= metrics
        best = best_epoch(history, cfg.trainer.monitor)
        results["train_val_accuracy_gap"] = history["accuracy"][best] - history["val_accuracy"][best]
        tracker.log_metrics({"train_val_accuracy_gap": results["train_val_accuracy_gap"]}, step=final_step)
        if cfg.tracking.log_model:
            tracker.log_keras_model(model, data.validation.images[:2].astype(np.float32))
        (output_dir / "metrics.json").write_text(json.dumps(results, indent=2))
    return results
