"""Metrics for melanoma triage, computed from labels and predicted class probabilities.

scikit-learn computes every metric it has; only the operating-point reads of the ROC curve and the
expected calibration error are written here.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from melanoma_lab.evaluation.inference import NO_ALERT_NOTE


@dataclass
class Evaluation:
    metrics: dict[str, float]
    per_class: pd.DataFrame  # precision, recall, f1, support, roc_auc per class
    confusion: np.ndarray  # rows: true class, columns: predicted class
    probabilities: np.ndarray
    labels: np.ndarray


def _roc(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every point of the ROC curve, one per distinct score (``roc_curve``'s default drops collinear points,
    which can skip the operating point asked for)."""
    return roc_curve(y_true, score, drop_intermediate=False)


def sensitivity_at_specificity(y_true: np.ndarray, score: np.ndarray, specificity: float) -> float:
    """Highest true-positive rate with false-positive rate <= 1 - ``specificity``."""
    fpr, tpr, _ = _roc(y_true, score)
    allowed = fpr <= 1 - specificity + 1e-12
    return float(tpr[allowed].max()) if allowed.any() else 0.0


def specificity_at_sensitivity(y_true: np.ndarray, score: np.ndarray, sensitivity: float) -> float:
    """Highest true-negative rate among thresholds reaching true-positive rate >= ``sensitivity``."""
    fpr, tpr, _ = _roc(y_true, score)
    reached = tpr >= sensitivity - 1e-12
    return float((1 - fpr[reached]).max()) if reached.any() else 0.0


def reliability_table(labels: np.ndarray, probabilities: np.ndarray, bins: int) -> pd.DataFrame:
    """Per confidence bin: mean confidence, accuracy and count (for the reliability diagram)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    bin_of = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows = [{"bin_low": edges[b], "bin_high": edges[b + 1], "count": int((bin_of == b).sum()),
             "confidence": float(confidence[bin_of == b].mean()) if (bin_of == b).any() else np.nan,
             "accuracy": float(correct[bin_of == b].mean()) if (bin_of == b).any() else np.nan}
            for b in range(bins)]
    return pd.DataFrame(rows)


def threshold_for_sensitivity(y_true: np.ndarray, score: np.ndarray, sensitivity: float) -> float:
    """The highest score threshold whose alerts (score >= threshold) reach ``sensitivity``."""
    _, tpr, thresholds = _roc(y_true, score)
    return float(thresholds[np.flatnonzero(tpr >= sensitivity - 1e-12)[0]])


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    table = reliability_table(labels, probabilities, bins).dropna()
    return float((table["count"] * (table["accuracy"] - table["confidence"]).abs()).sum() / len(labels))


def metric_key(class_name: str) -> str:
    """A class name as an MLflow-friendly metric suffix."""
    return class_name.replace(" ", "_")


def _binary_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    return float(roc_auc_score(y_true, score)) if 0 < y_true.sum() < len(y_true) else float("nan")


def _balanced_accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    """Mean recall over the classes present in ``labels`` (scikit-learn leaves absent classes out, warning when
    one is predicted; here that is expected: ``classes_scored`` says how many classes it averages)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")
        return float(balanced_accuracy_score(labels, predicted))


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


def frequent_balanced_accuracy(labels: np.ndarray, predicted: np.ndarray, frequent: np.ndarray) -> float:
    """Mean recall over the ``frequent`` classes present in ``labels`` (a wrong guess of a rare class still counts
    as an error): balanced accuracy without classes too small to estimate a recall."""
    recalls = [float((predicted[labels == c] == c).mean()) for c in frequent if (labels == c).any()]
    return float(np.mean(recalls)) if recalls else float("nan")


def alert_rates(is_melanoma: np.ndarray, alerts: np.ndarray) -> dict[str, float]:
    """Sensitivity and specificity of melanoma ``alerts`` (NaN where there is no melanoma, or nothing else)."""
    return {"melanoma_alert_sensitivity": float(alerts[is_melanoma].mean()) if is_melanoma.any() else float("nan"),
            "melanoma_alert_specificity": (float((~alerts[~is_melanoma]).mean()) if (~is_melanoma).any()
                                           else float("nan"))}


def evaluate(labels: np.ndarray, probabilities: np.ndarray, classes: list[str], melanoma_class: str,
             fixed_specificity: float, fixed_sensitivity: float, calibration_bins: int,
             alert_threshold: float | None = None) -> Evaluation:
    """Every metric of one evaluation (validation or test).

    A class with no image here has NaN recall and F1 and is left out of the means (balanced accuracy and macro F1
    average over the ``classes_scored`` classes present). The melanoma alert fires when p(melanoma) >=
    ``alert_threshold`` (chosen on validation with :func:`calibrate_alert`); without one there are no alert
    metrics."""
    labels = np.asarray(labels)
    predicted = probabilities.argmax(axis=1)
    all_classes = np.arange(len(classes))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=all_classes, zero_division=0)
    present = support > 0
    recall, f1 = np.where(present, recall, np.nan), np.where(present, f1, np.nan)
    aucs = np.array([_binary_auc(labels == c, probabilities[:, c]) for c in all_classes])
    per_class = pd.DataFrame({"class": classes, "precision": precision, "recall": recall, "f1": f1,
                              "support": support, "roc_auc": aucs})
    metrics = {
        "accuracy": float(accuracy_score(labels, predicted)),
        "balanced_accuracy": _balanced_accuracy(labels, predicted),
        "classes_scored": int(present.sum()),
        "macro_f1": float(f1_score(labels, predicted, labels=all_classes[present], average="macro",
                                   zero_division=0)),
        "macro_roc_auc": float(np.nanmean(aucs)) if np.isfinite(aucs).any() else float("nan"),
        "ece": expected_calibration_error(labels, probabilities, calibration_bins),
    }
    if melanoma_class in classes:
        mel = classes.index(melanoma_class)
        is_mel = labels == mel
        flagged = predicted == mel
        metrics |= {
            "melanoma_sensitivity": float(flagged[is_mel].mean()) if is_mel.any() else float("nan"),
            "melanoma_specificity": float((~flagged[~is_mel]).mean()) if (~is_mel).any() else float("nan"),
            "melanoma_roc_auc": _binary_auc(is_mel, probabilities[:, mel]),
        }
        if 0 < is_mel.sum() < len(labels):
            metrics[f"melanoma_sensitivity_at_spec_{fixed_specificity:g}"] = sensitivity_at_specificity(
                is_mel, probabilities[:, mel], fixed_specificity)
            metrics[f"melanoma_specificity_at_sens_{fixed_sensitivity:g}"] = specificity_at_sensitivity(
                is_mel, probabilities[:, mel], fixed_sensitivity)
        if alert_threshold is not None:
            metrics |= {"melanoma_alert_threshold": float(alert_threshold),
                        **alert_rates(is_mel, probabilities[:, mel] >= alert_threshold)}
    for name, class_recall, class_f1 in zip(classes, recall, f1):
        metrics[f"recall_{metric_key(name)}"] = float(class_recall)
        metrics[f"f1_{metric_key(name)}"] = float(class_f1)
    cm = confusion_matrix(labels, predicted, labels=all_classes)
    return Evaluation(metrics=metrics, per_class=per_class, confusion=cm, probabilities=probabilities,
                      labels=labels)
