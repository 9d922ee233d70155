"""External evaluation: score any logged or registered model on any dataset, in its own MLflow run.

    melanoma-lab evaluate model_uri=runs:/<run id>/model dataset=ham10000 class_map=ham10000_to_isic9

The model's metadata fixes its classes, input size, test-time augmentation and melanoma alert threshold (chosen on
its own validation data); every image goes through the one prediction path (:mod:`melanoma_lab.evaluation.inference`). The
dataset's labels are renamed with ``class_map`` (``conf/class_map/*.yaml``); images whose (renamed) label is no class
of the model are not scored but counted per class (metric ``eval_unknown_class_images``, ``evaluation/
unknown_class_counts.json``) and listed (``evaluation/unknown_classes.csv``). The run (named ``evaluate-<dataset>``)
holds the full metrics (``eval_*``, melanoma_* for the model's melanoma class) and figures, and is tagged with
``source_model_uri`` and ``source_run_id``. The scored images are audited against the images the source model was
developed on (:mod:`melanoma_lab.study.external_audit`): ``eval_clean_*`` leave out its copies of them, listed in
``evaluation/eval_training_overlap.csv``. ``shift_check=true`` also scores the images under each acquisition
shift of ``evaluation.shifts`` (:mod:`melanoma_lab.evaluation.shifts`): ``eval_shift_*`` metrics and
``evaluation/eval_shift_check.csv`` / ``.md``.
"""

from __future__ import annotations

import json
import logging
from functools import partial
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from melanoma_lab.config.schema import validate
from melanoma_lab.errors import ConfigError, UserError
from melanoma_lab.data.staging import write_atomically
from melanoma_lab.evaluation.shifts import render, shift_metrics

log = logging.getLogger(__name__)
SPLITS = ("all", "train", "test")
UNKNOWN_COLUMNS = ["path", "label", "mapped_label"]


class ModelNotLoadableError(UserError, RuntimeError):
    """``model_uri`` names no model melanoma_lab can load."""


def map_labels(files: pd.DataFrame, class_map: dict[str, str], classes: list[str]) -> tuple[pd.DataFrame,
                                                                                             pd.DataFrame]:
    """(rows whose label, renamed by ``class_map``, is one of ``classes``, with that name as ``label``;
    the other rows as ``path``, ``label``, ``mapped_label``)."""
    mapped = files["label"].map(lambda label: class_map.get(label, label))
    known = mapped.isin(classes)
    unknown = pd.DataFrame({"path": files["path"], "label": files["label"], "mapped_label": mapped})[~known]
    return files[known].assign(label=mapped[known]).reset_index(drop=True), unknown.reset_index(drop=True)


def _load(uri: str):
    import mlflow

    from melanoma_lab.serving.predict import load_model

    try:
        info = mlflow.models.get_model_info(uri)
        return load_model(uri), info
    except (mlflow.exceptions.MlflowException, OSError, ValueError) as error:
        raise ModelNotLoadableError(f"cannot load model_uri={uri}: {error}\nGive a model logged by melanoma_lab: "
                                    "runs:/<run id>/model or models:/melanoma-classifier@champion, in the store of "
                                    "tracking.tracking_uri / paths.mlruns_dir") from None


def shift_check(evaluation: DictConfig, model, settings, images, labels) -> pd.DataFrame:
    """The shift check (:mod:`melanoma_lab.evaluation.shifts`) of the scored images: the headline metrics after each shift of
    ``evaluation.shifts`` at the model's own alert threshold, with ``evaluation.shift_tta`` views."""
    import dataclasses

    import numpy as np

    from melanoma_lab.evaluation import registry
    from melanoma_lab.evaluation.metrics import evaluate
    from melanoma_lab.evaluation.shifts import build_shifts, shift_table

    settings = dataclasses.replace(settings, tta=evaluation.shift_tta)
    images, labels = np.asarray(images), np.asarray(labels)
    frequent = np.flatnonzero(np.bincount(labels, minlength=len(settings.classes))
                              >= evaluation.frequent_class_images)

    def score(probabilities):
        found = evaluate(labels, probabilities, settings.classes, settings.melanoma_class,
                         evaluation.fixed_specificity, evaluation.fixed_sensitivity,
                         evaluation.calibration_bins, alert_threshold=settings.threshold, frequent=frequent).metrics
        return {name: found.get(name, float("nan")) for name in registry.names(registry.SHIFT)}

    return shift_table(lambda shift: settings.probabilities(model, list(images if shift is None else shift(images))),
                       score, build_shifts(evaluation.shifts))


def run_evaluation(cfg: DictConfig, output_dir: str | Path, overrides: list[str] | None = None) -> dict[str, float]:
    """Score ``cfg.model_uri`` on ``cfg.dataset`` (its ``cfg.split`` images) in a run tagged with the command's
    ``overrides``; prints the headline numbers and returns the logged metrics."""
    validate(cfg)
    if cfg.split not in SPLITS:
        raise ConfigError(f"split={cfg.split!r} must be one of {', '.join(SPLITS)}")

    from melanoma_lab.data.catalog import fingerprint
    from melanoma_lab.data.pipeline import decode
    from melanoma_lab.data.sources import load_catalog
    from melanoma_lab.evaluation.metrics import evaluate
    from melanoma_lab.study.evaluation_log import evaluation_metrics, log_evaluation
    from melanoma_lab.study.external_audit import TABLE, clean_metrics, marked, training_overlap
    from melanoma_lab.tracking.provenance import provenance_tags
    from melanoma_lab.tracking.store import configured_tracking_uri, fluent_tracking_uri
    from melanoma_lab.evaluation.subgroups import log_subgroups
    from melanoma_lab.tracking.identity import override_tags
    from melanoma_lab.tracking.lineage import log_inputs
    from melanoma_lab.tracking.run import RunTracker, flatten

    store = configured_tracking_uri(cfg.tracking, cfg.paths.mlruns_dir)
    with fluent_tracking_uri(store):
        loaded, info = _load(cfg.model_uri)
    settings = loaded.settings
    catalog = load_catalog(cfg.dataset)
    files = catalog.files if cfg.split == "all" else catalog.split(cfg.split)
    class_map = {str(k): str(v) for k, v in (cfg.class_map or {}).items()}
    known, unknown = map_labels(files, class_map, settings.classes)
    if known.empty:
        raise UserError(f"none of the {len(files)} images has a class the model knows ({', '.join(settings.classes)})"
                        f"; the dataset's classes are {', '.join(catalog.classes)}. Rename them with class_map=NAME "
                        "(conf/class_map/) or class_map.<label>=<model class>")
    melanoma = class_map.get(cfg.dataset.melanoma_class, cfg.dataset.melanoma_class)
    if melanoma != settings.melanoma_class:
        log.warning("the dataset's melanoma class %r maps to %r, not to the model's melanoma class %r: melanoma_* "
                    "metrics use the model's", cfg.dataset.melanoma_class, melanoma, settings.melanoma_class)
    decoded = decode(known, settings.classes, settings.image_size)
    probabilities = settings.probabilities(loaded.model, list(decoded.images))  # the one prediction path
    score = partial(evaluate, classes=settings.classes, melanoma_class=settings.melanoma_class,
                    fixed_specificity=cfg.evaluation.fixed_specificity,
                    fixed_sensitivity=cfg.evaluation.fixed_sensitivity,
                    calibration_bins=cfg.evaluation.calibration_bins, alert_threshold=settings.threshold)
    result = score(decoded.labels, probabilities)
    overlap = training_overlap(store, info.run_id, decoded.files)  # copies of the model's own training images
    unknown_counts = {str(k): int(v) for k, v in unknown["label"].value_counts().sort_index().items()}
    metrics = evaluation_metrics(result, "eval", {}) | {
        "eval_images": len(decoded.labels), "eval_unknown_class_images": len(unknown),
        "eval_skipped_unreadable": len(decoded.failures)} | clean_metrics(overlap, decoded.files, decoded.labels,
                                                                         probabilities, score)
    shifted = (shift_check(cfg.evaluation, loaded.model, settings, decoded.images, decoded.labels) if cfg.shift_check
               else None)
    if shifted is not None:
        metrics |= shift_metrics(shifted, "eval_")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    tags = {"evaluation": "external", "source_model_uri": cfg.model_uri, "source_run_id": info.run_id or "",
            "source_model_id": str(getattr(info, "model_id", "") or ""), "dataset": cfg.dataset.name,
            "data_fingerprint": fingerprint(files), "output_dir": str(Path(output_dir).resolve()),
            "training_overlap": overlap.note, **provenance_tags(), **override_tags(overrides)}
    tracker = RunTracker(cfg.tracking.enabled, store, cfg.tracking.experiment_name, cfg.name,
                         Path(cfg.paths.mlruns_dir).resolve(), tags)
    with tracker:
        tracker.log_params(flatten(resolved))
        tracker.log_dict(resolved, "config/config.yaml")
        log_evaluation(tracker, result, metrics, "eval", marked(decoded.files, overlap), settings.classes,
                       settings.melanoma_class, cfg.evaluation.calibration_bins, step=0)
        tracker.log_table(overlap.matches, TABLE)
        tracker.log_table(unknown, "evaluation/unknown_classes.csv")
        if tracker.enabled:
            log_inputs(tracker.client, tracker.run_id, {"evaluation": decoded.files}, cfg.dataset.name)
        log_subgroups(tracker, "eval", decoded.files, decoded.labels, probabilities, settings.classes,
                      settings.melanoma_class, settings.threshold, cfg.evaluation)
        if shifted is not None:
            tracker.log_table(shifted, "evaluation/eval_shift_check.csv")
            tracker.log_text(render(shifted), "evaluation/eval_shift_check.md")
        tracker.log_dict(unknown_counts, "evaluation/unknown_class_counts.json")
        if decoded.failures:
            tracker.log_dict(decoded.failures, "skipped_unreadable.json")
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    write_atomically(Path(output_dir) / "metrics.json", json.dumps(metrics | {"unknown_classes": unknown_counts},
                                                              indent=2))
    if unknown_counts:
        log.warning("not scored: %d images of classes the model does not know: %s (evaluation/unknown_classes.csv)",
                    len(unknown), unknown_counts)
    print(f"[{cfg.name}] {summary_line(metrics)}")
    return metrics


def summary_line(metrics: dict[str, float]) -> str:
    """The images scored (and how many the source model trained on), the registry's summary metrics (``eval_``, then
    ``eval_clean_`` without those images), then the worst drop of each shift family."""
    from melanoma_lab.evaluation import registry

    shown = [f"eval_{part}{name}" for part in ("", "clean_") for name in registry.names(registry.SUMMARY)]
    keys = ["eval_images", "eval_unknown_class_images", "eval_training_overlap_images", *shown,
            *sorted(k for k in metrics if k.startswith("eval_shift_worst_drop_"))]
    return "  ".join(f"{k}={metrics[k]:.4g}" for k in keys if k in metrics)
