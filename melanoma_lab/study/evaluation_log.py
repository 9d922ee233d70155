"""Log one evaluation to a run: metrics, per-image predictions, per-class table, confusion matrix, ROC curves and
reliability diagram. Shared by training runs (:mod:`melanoma_lab.study.experiment`) and external evaluations
(:mod:`melanoma_lab.study.external`), so both leave the same artifacts under ``evaluation/<prefix>_*``."""

from __future__ import annotations

import logging

import pandas as pd

from melanoma_lab.evaluation import plots, registry
from melanoma_lab.data.contamination import TWIN_COLUMN
from melanoma_lab.evaluation.bootstrap import GROUP_COLUMN
from melanoma_lab.evaluation.metrics import AlertCalibration, Evaluation
from melanoma_lab.evaluation.scores import reliability_table
from melanoma_lab.tracking.run import RunTracker

log = logging.getLogger(__name__)
HELD_OUT_PREDICTIONS = "heldout_predictions.csv"  # a fold run's scored fold (nested: ``fold``, else ``val``)


def headline(metrics: dict[str, float]) -> dict[str, float]:
    """The numbers a reader looks for first (the registry's headline keys) among ``metrics``, as
    ``headline/<key>``: the MLflow UI lists them together (the run page's metrics, a "headline" section in the
    charts, easy to pick as run-table columns)."""
    return {f"headline/{key}": metrics[key] for key in registry.keys(registry.HEADLINE) if key in metrics}


def evaluation_metrics(result: Evaluation, prefix: str, history: dict[str, list]) -> dict[str, float]:
    """``<prefix>_<metric>``. A key Keras also logs per epoch is logged as ``final_<key>`` where the registry
    shows that name (``final_val_accuracy``); otherwise (``val_balanced_accuracy``) under its one name, after the
    epochs, so that its value in MLflow is the held-out evaluation's and its history the epoch curve before it."""
    named = {f"{prefix}_{k}": v for k, v in result.metrics.items()}
    renamed = set(registry.keys(registry.SUMMARY)) | set(registry.keys(registry.CROSSVAL))
    return {(f"final_{k}" if k in history and f"final_{k}" in renamed else k): v for k, v in named.items()}


def predictions_table(result: Evaluation, files: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """One row per image: path, true label index, the split group (``group``: copies and one lesion's images share
    one; intervals resample these) and ``train_twin`` (content on both sides of Train/Test) when known, and the
    probability of each class."""
    table = pd.DataFrame(result.probabilities, columns=[f"p_{c}" for c in classes])
    if TWIN_COLUMN in files:
        table.insert(0, TWIN_COLUMN, files[TWIN_COLUMN].to_numpy(dtype=bool))
    if GROUP_COLUMN in files:
        table.insert(0, GROUP_COLUMN, files[GROUP_COLUMN].to_numpy())
    table.insert(0, "label", result.labels)
    table.insert(0, "path", files["path"].to_numpy())
    return table


def log_evaluation(tracker: RunTracker, result: Evaluation, metrics: dict[str, float], prefix: str,
                   files: pd.DataFrame, classes: list[str], melanoma_class: str, bins: int, step: int) -> pd.DataFrame:
    """Log ``metrics`` and the evaluation's tables and figures (the ROC curve of ``melanoma_class`` drawn bold);
    returns the per-image predictions table."""
    tracker.log_metrics(metrics, step=step)
    predictions = predictions_table(result, files, classes)
    tracker.log_table(predictions, f"evaluation/{prefix}_predictions.csv")
    tracker.log_table(result.per_class, f"evaluation/{prefix}_per_class.csv")
    tracker.log_figure(plots.confusion_matrices(result.confusion, classes, prefix),
                       f"evaluation/{prefix}_confusion_matrix.png")
    tracker.log_figure(plots.roc_curves(result.labels, result.probabilities, classes, prefix, melanoma_class),
                       f"evaluation/{prefix}_roc_curves.png")
    tracker.log_figure(plots.reliability_diagram(reliability_table(result.labels, result.probabilities, bins),
                                                 prefix), f"evaluation/{prefix}_reliability.png")
    tracker.log_dict({"classes": classes, "confusion_matrix": result.confusion.tolist()},
                     f"evaluation/{prefix}_confusion_matrix.json")
    return predictions


def log_alert(tracker: RunTracker, alert: AlertCalibration) -> None:
    """Tag the run with how its melanoma alert was calibrated (``melanoma_alert_status``), and say why if not."""
    tracker.set_tags({"melanoma_alert_status": alert.status})
    if alert.threshold is None:
        tracker.set_tags({"melanoma_alert_note": alert.note})
        log.warning("%s", alert.note)
