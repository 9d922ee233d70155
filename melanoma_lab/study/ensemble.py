"""A cross-validation's fold models as one model (``study.ensemble=true``).

The ensemble is a Keras model that averages the softmax outputs of the K fold models on one input, logged on the
CV parent run exactly like a single run's model (:mod:`melanoma_lab.serving.classifier`), so ``predict``, ``serve`` and
``promote`` use it unchanged. Its melanoma alert threshold is chosen on the out-of-fold predictions (every image
predicted by a fold model that did not train on it), and a Test split, if present, is scored by the ensemble
(``ensemble_test_<metric>``).
"""

from __future__ import annotations

from functools import partial

import keras
import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Run
from omegaconf import DictConfig

from melanoma_lab.data.contamination import clean_test_metrics
from melanoma_lab.errors import ConfigError
from melanoma_lab.evaluation.metrics import AlertCalibration, calibrate_alert, evaluate
from melanoma_lab.study.evaluation_log import log_evaluation
from melanoma_lab.evaluation.inference import predict_probabilities
from melanoma_lab.evaluation.ood import logged_input_check
from melanoma_lab.study.oof import probabilities_of
from melanoma_lab.study.preparation import decode_split
from melanoma_lab.serving.classifier import log_classifier, model_metadata
from melanoma_lab.tracking.run import RunTracker


def check_ensemble(study: DictConfig, tracking: DictConfig) -> None:
    """Refuse, before any fold trains, an ensemble that could not be built or logged."""
    if not study.get("ensemble", False):
        return
    if study.cv_folds < 2 or not (tracking.enabled and tracking.log_model):
        raise ConfigError("study.ensemble=true averages the logged models of a cross-validation: it needs "
                          "study.cv_folds >= 2, tracking.enabled=true and tracking.log_model=true")


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


def log_ensemble(dataset: DictConfig, evaluation: DictConfig, parent: RunTracker, runs: list[Run], oof: pd.DataFrame,
                 classes: list[str], files: pd.DataFrame) -> dict[str, float]:
    """Build, score and log the fold ensemble on the ``parent`` run; returns ``ensemble_*`` metrics."""
    ensemble = average_model([fold_model(run) for run in runs], dataset.image_size)
    alert: AlertCalibration = calibrate_alert(oof["label"].to_numpy(), probabilities_of(oof, classes), classes,
                                              dataset.melanoma_class, evaluation.fixed_sensitivity)
    parent.set_tags({"ensemble_alert_status": alert.status, "ensemble_alert_chosen_on": "out-of-fold predictions"})
    metrics: dict[str, float] = {"ensemble_folds": len(runs)}
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
        log_evaluation(parent, result, test_metrics, "ensemble_test", test.files, classes, dataset.melanoma_class,
                       evaluation.calibration_bins, step=0)
        metrics |= test_metrics
    parent.log_metrics(metrics)
    example = np.full((dataset.image_size, dataset.image_size, 3), 128, np.uint8)  # the input signature's
    parent.log_model(lambda: log_classifier(ensemble, example, model_metadata(dataset, evaluation, classes, alert)
                          | {"ensemble_folds": len(runs), "alert_threshold_chosen_on": "out-of-fold predictions"}
                          | logged_input_check(f"runs:/{runs[0].info.run_id}/model")))
    return metrics
