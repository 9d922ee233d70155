"""A cross-validation's fold models as one model (``study.ensemble=true``).

The ensemble is a Keras model that averages the softmax outputs of the K fold models on one input, logged on the
CV parent run exactly like a single run's model (:mod:`melanoma_lab.serving.classifier`), so ``predict``, ``serve`` and
``promote`` use it unchanged. Its melanoma alert threshold is chosen on its own averaged probabilities of the
calibration slice, Train images that no fold model trained or validated on (:mod:`melanoma_lab.study.calibration`;
with ``study.calibration_fraction=0`` on the members' out-of-fold predictions, as the metadata then says), and a
Test split, if present, is scored by the ensemble (``ensemble_test_<metric>``, with group-bootstrap intervals).
"""

from __future__ import annotations

import logging
from functools import partial

import keras
import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Run
from omegaconf import DictConfig

from melanoma_lab.data.calibration_slice import calibration_fraction, calibration_slice
from melanoma_lab.data.contamination import clean_test_metrics
from melanoma_lab.errors import ConfigError
from melanoma_lab.evaluation import registry
from melanoma_lab.evaluation.metrics import evaluate
from melanoma_lab.study.calibration import EnsembleCalibration, on_member_oof, on_slice, with_intervals
from melanoma_lab.study.evaluation_log import log_evaluation
from melanoma_lab.evaluation.inference import predict_probabilities
from melanoma_lab.evaluation.ood import logged_input_check
from melanoma_lab.study.oof import probabilities_of
from melanoma_lab.study.preparation import decode_split
from melanoma_lab.serving.classifier import log_classifier, model_metadata
from melanoma_lab.tracking.run import RunTracker

log = logging.getLogger(__name__)


def check_ensemble(study: DictConfig, tracking: DictConfig) -> None:
    """Refuse, before any fold trains, an ensemble that could not be built or logged."""
    if not study.get("ensemble", False):
        return
    if study.cv_folds < 2 or not (tracking.enabled and tracking.log_model):
        raise ConfigError("study.ensemble=true averages the logged models of a cross-validation: it needs "
                          "study.cv_folds >= 2, tracking.enabled=true and tracking.log_model=true")
    calibration_fraction(study)  # in range


def average_model(models: list[keras.Model], image_size: int) -> keras.Model:
    """One model whose output is the mean of ``models``' class probabilities (renamed ``fold_<k>``)."""
    inputs = keras.Input((image_size, image_size, 3), name="image")
    for number, model in enumerate(models, start=1):
        model.name = f"fold_{number}"  # a functional model needs unique layer names
    outputs = keras.layers.Average(name="fold_average", dtype="float32")([model(inputs) for model in models])
    return keras.Model(inputs, outputs, name=f"ensemble_of_{len(models)}_folds")


def fold_model(run: Run) -> keras.Model:
    """The Keras network logged by a fold run (loaded like ``predict`` loads it: safe mode, nothing unpickled)."""
    return mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model").unwrap_python_model().model


def calibrate(ensemble: keras.Model, dataset: DictConfig, evaluation: DictConfig, study: DictConfig,
              parent: RunTracker, oof: pd.DataFrame, classes: list[str], slice_files: pd.DataFrame
              ) -> EnsembleCalibration:
    """The ensemble's threshold: on its own probabilities of the calibration slice (``slice_files``; logged as
    ``evaluation/ensemble_calibration_predictions.csv``), or on the members' out-of-fold predictions without one."""
    fraction, sensitivity = calibration_fraction(study), evaluation.fixed_sensitivity
    why = "study.calibration_fraction=0"
    if len(slice_files):
        part = decode_split(dataset, classes, slice_files)
        probabilities = predict_probabilities(ensemble, part.images, dataset.batch_size, evaluation.tta)
        table = pd.DataFrame({"path": part.files["path"].to_numpy(), "label": part.labels,
                              "group": part.files["group"].to_numpy()})
        table[[f"p_{c}" for c in classes]] = probabilities
        parent.log_table(table, "evaluation/ensemble_calibration_predictions.csv")
        chosen = on_slice(part.labels, probabilities, part.files["group"], classes, dataset.melanoma_class,
                          sensitivity, fraction, study.bootstrap_samples, study.confidence)
        if chosen is not None:
            return chosen
        why = f"the calibration slice of {len(part.labels)} images holds no {dataset.melanoma_class}"
        log.warning("fold ensemble: %s; its alert threshold is chosen on the members' out-of-fold predictions", why)
    return on_member_oof(oof["label"].to_numpy(), probabilities_of(oof, classes), classes, dataset.melanoma_class,
                         sensitivity, fraction, why)


def log_ensemble(dataset: DictConfig, evaluation: DictConfig, study: DictConfig, seed: int, parent: RunTracker,
                 runs: list[Run], oof: pd.DataFrame, classes: list[str], files: pd.DataFrame) -> dict[str, float]:
    """Build, calibrate (:func:`calibrate`), score and log the fold ensemble on the ``parent`` run; returns
    ``ensemble_*`` metrics."""
    ensemble = average_model([fold_model(run) for run in runs], dataset.image_size)
    calibration = calibrate(ensemble, dataset, evaluation, study, parent, oof, classes,
                            calibration_slice(files, study, seed))
    alert = calibration.alert
    parent.set_tags({"ensemble_alert_status": alert.status, "ensemble_alert_chosen_on": calibration.chosen_on,
                     "ensemble_alert_source": calibration.source})
    metrics: dict[str, float] = {"ensemble_folds": len(runs)} | calibration.logged()
    if alert.threshold is not None:
        metrics["ensemble_melanoma_alert_threshold"] = alert.threshold
    test_files = files[files["split"] == "test"]
    test = decode_split(dataset, classes, test_files) if len(test_files) else None
    if test is not None and len(test.labels):
        probabilities = predict_probabilities(ensemble, test.images, dataset.batch_size, evaluation.tta)
        score = partial(evaluate, classes=classes, melanoma_class=dataset.melanoma_class,
                        fixed_specificity=evaluation.fixed_specificity,
                        fixed_sensitivity=evaluation.fixed_sensitivity,
                        calibration_bins=evaluation.calibration_bins, alert_threshold=alert.threshold)
        result = score(test.labels, probabilities)
        scored = result.metrics | clean_test_metrics(test.files, test.labels, probabilities, score)
        test_metrics = {f"ensemble_{k if k.startswith('test_') else 'test_' + k}": v for k, v in scored.items()}
        test_metrics |= with_intervals("ensemble_test", test.labels, probabilities, test.files["group"], classes,
                                       dataset.melanoma_class, alert.threshold, study.bootstrap_samples,
                                       study.confidence)
        log_evaluation(parent, result, test_metrics, "ensemble_test", test.files, classes, dataset.melanoma_class,
                       evaluation.calibration_bins, step=0)
        metrics |= test_metrics
    parent.log_metrics(metrics)
    example = np.full((dataset.image_size, dataset.image_size, 3), 128, np.uint8)  # the input signature's
    metadata = (model_metadata(dataset, evaluation, classes, alert) | calibration.metadata()
                | {"ensemble_folds": len(runs), "ensemble_scores": ensemble_scores(metrics)}
                | logged_input_check(f"runs:/{runs[0].info.run_id}/model"))  # a fold's (it depends on no network)
    parent.log_model(lambda: log_classifier(ensemble, example, metadata))
    return metrics


def ensemble_scores(metrics: dict[str, float]) -> dict[str, float | None]:
    """The ensemble's own numbers that its model carries (``predict --json`` shows them): those the registry tags
    a registered model with under the ensemble's prefixes, with their interval bounds (None for NaN)."""
    keys = registry.keys_with_intervals(registry.TAGS, ("ensemble_calibration", "ensemble_test"))
    return {key: None if not np.isfinite(metrics[key]) else float(metrics[key]) for key in keys if key in metrics}
