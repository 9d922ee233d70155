"""Metrics for melanoma triage, computed from labels and predicted class probabilities: every metric of the
registry (:mod:`melanoma_lab.evaluation.registry`) and the per-class and operating-point ones."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from melanoma_lab.evaluation import registry
from melanoma_lab.evaluation.scores import binary_auc, roc

NO_ALERT_NOTE = "this model has no calibrated melanoma alert"


@dataclass
class Evaluation:
    metrics: dict[str, float]
    per_class: pd.DataFrame  # precision, recall, f1, support, roc_auc per class
    confusion: np.ndarray  # rows: true class, columns: predicted class
    probabilities: np.ndarray
    labels: np.ndarray


def sensitivity_at_specificity(y_true: np.ndarray, score: np.ndarray, specificity: float) -> float:
    """Highest true-positive rate with false-positive rate <= 1 - ``specificity``."""
    fpr, tpr, _ = roc(y_true, score)
    allowed = fpr <= 1 - specificity + 1e-12
    return float(tpr[allowed].max()) if allowed.any() else 0.0


def specificity_at_sensitivity(y_true: np.ndarray, score: np.ndarray, sensitivity: float) -> float:
    """Highest true-negative rate among thresholds reaching true-positive rate >= ``sensitivity``."""
    fpr, tpr, _ = roc(y_true, score)
    reached = tpr >= sensitivity - 1e-12
    return float((1 - fpr[reached]).max()) if reached.any() else 0.0


def threshold_for_sensitivity(y_true: np.ndarray, score: np.ndarray, sensitivity: float) -> float:
    """The highest score threshold whose alerts (score >= threshold) reach ``sensitivity``."""
    _, tpr, thresholds = roc(y_true, score)
    return float(thresholds[np.flatnonzero(tpr >= sensitivity - 1e-12)[0]])


def metric_key(class_name: str) -> str:
    """A class name as an MLflow-friendly metric suffix."""
    return class_name.replace(" ", "_")


@dataclass
class AlertCalibration:
    """The melanoma alert threshold chosen on validation data, or why there is none (``threshold`` None)."""

    threshold: float | None
    status: str  # calibrated | no_melanoma_in_validation | no_melanoma_class
    note: str = ""

    def metadata(self) -> dict[str, object]:
        return {"melanoma_alert_threshold": self.threshold, "melanoma_alert_status": self.status,
                "melanoma_alert_note": self.note}


def calibrate_alert(labels: np.ndarray, probabilities: np.ndarray, classes: list[str], melanoma_class: str,
                    sensitivity: float) -> AlertCalibration:
    """The alert threshold for ``sensitivity`` on these (validation) labels. Never call it on Test: with no
    melanoma here there is no threshold, and the model has no calibrated alert."""
    if melanoma_class not in classes:
        return AlertCalibration(None, "no_melanoma_class", f"{NO_ALERT_NOTE}: the classes have no "
                                f"{melanoma_class!r} (dataset.melanoma_class)")
    mel = classes.index(melanoma_class)
    is_mel = np.asarray(labels) == mel
    if not is_mel.any():
        return AlertCalibration(None, "no_melanoma_in_validation", f"{NO_ALERT_NOTE}: validation holds no "
                                f"{melanoma_class} image to choose a threshold for sensitivity {sensitivity:g}")
    return AlertCalibration(threshold_for_sensitivity(is_mel, probabilities[:, mel], sensitivity), "calibrated")


def threshold_alerts(p_melanoma: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Each image's alert at its own threshold (p >= threshold; none where the threshold is NaN: its fold had none)."""
    return np.where(np.isnan(thresholds), False, p_melanoma >= np.nan_to_num(thresholds, nan=np.inf))


def alert_rates(is_melanoma: np.ndarray, alerts: np.ndarray) -> dict[str, float]:
    """Sensitivity and specificity of melanoma ``alerts`` (NaN where there is no melanoma, or nothing else)."""
    return {"melanoma_alert_sensitivity": float(alerts[is_melanoma].mean()) if is_melanoma.any() else float("nan"),
            "melanoma_alert_specificity": (float((~alerts[~is_melanoma]).mean()) if (~is_melanoma).any()
                                           else float("nan"))}


def evaluate(labels: np.ndarray, probabilities: np.ndarray, classes: list[str], melanoma_class: str,
             fixed_specificity: float, fixed_sensitivity: float, calibration_bins: int,
             alert_threshold: float | None = None, frequent: np.ndarray | None = None) -> Evaluation:
    """Every metric of one evaluation (validation or test): each registered metric that applies, the melanoma
    operating points and each class' recall and F1.

    A class with no image here has NaN recall and F1 and is left out of the means (balanced accuracy and macro F1
    average over the ``classes_scored`` classes present). The melanoma alert fires when p(melanoma) >=
    ``alert_threshold`` (chosen on validation with :func:`calibrate_alert`); without one there are no alert
    metrics. ``frequent`` (class indices): also the balanced accuracy over those classes."""
    labels = np.asarray(labels)
    predicted = probabilities.argmax(axis=1)
    all_classes = np.arange(len(classes))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=all_classes, zero_division=0)
    present = support > 0
    recall, f1 = np.where(present, recall, np.nan), np.where(present, f1, np.nan)
    aucs = np.array([binary_auc(labels == c, probabilities[:, c]) for c in all_classes])
    per_class = pd.DataFrame({"class": classes, "precision": precision, "recall": recall, "f1": f1,
                              "support": support, "roc_auc": aucs})
    metrics = registry.compute(registry.Scored(labels, probabilities, classes, melanoma_class, alert_threshold,
                                               frequent, calibration_bins))
    if melanoma_class in classes:
        mel = classes.index(melanoma_class)
        is_mel = labels == mel
        if 0 < is_mel.sum() < len(labels):
            metrics[f"melanoma_sensitivity_at_spec_{fixed_specificity:g}"] = sensitivity_at_specificity(
                is_mel, probabilities[:, mel], fixed_specificity)
            metrics[f"melanoma_specificity_at_sens_{fixed_sensitivity:g}"] = specificity_at_sensitivity(
                is_mel, probabilities[:, mel], fixed_sensitivity)
        if alert_threshold is not None:
            metrics["melanoma_alert_threshold"] = float(alert_threshold)
    for name, class_recall, class_f1 in zip(classes, recall, f1):
        metrics[f"recall_{metric_key(name)}"] = float(class_recall)
        metrics[f"f1_{metric_key(name)}"] = float(class_f1)
    cm = confusion_matrix(labels, predicted, labels=all_classes)
    return Evaluation(metrics=metrics, per_class=per_class, confusion=cm, probabilities=probabilities,
                      labels=labels)
