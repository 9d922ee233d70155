"""Metrics for melanoma triage, computed from labels and predicted class probabilities.

scikit-learn computes every metric it has; only the operating-point reads of the ROC curve and the
expected calibration error are written here.
"""

from __future__ import annotations

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


@dataclass
class Evaluation:
    metrics: dict[str, float]
    per_class: pd.DataFrame  # precision, recall, f1, support, roc_auc per class
    confusion: np.ndarray  # rows: true class, columns: predicted class
    probabilities: np.ndarray
    labels: np.ndarray


def sensitivity_at_specificity(y_true: np.ndarray, score: np.ndarray, specificity: float) -> float:
    """Highest true-positive rate with false-positive rate <= 1 - ``specificity``."""
    fpr, tpr, _ = roc_curve(y_true, score)
    allowed = fpr <= 1 - specificity + 1e-12
    return float(tpr[allowed].max()) if allowed.any() else 0.0


def specificity_at_sensitivity(y_true: np.ndarray, score: np.ndarray, sensitivity: float) -> float:
    """Highest true-negative rate among thresholds reaching true-positive rate >= ``sensitivity``."""
    fpr, tpr, _ = roc_curve(y_true, score)
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
    _, tpr, thresholds = roc_curve(y_true, score)
    reached = np.flatnonzero(tpr >= sensitivity - 1e-12)
    return float(min(thresholds[reached[0]], 1.0))


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    table = reliability_table(labels, probabilities, bins).dropna()
    return float((table["count"] * (table["accuracy"] - table["confidence"]).abs()).sum() / len(labels))


def metric_key(class_name: str) -> str:
    """A class name as an MLflow-friendly metric suffix."""
    return class_name.replace(" ", "_")


def _binary_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    return float(roc_auc_score(y_true, score)) if 0 < y_true.sum() < len(y_true) else float("nan")


def evaluate(labels: np.ndarray, probabilities: np.ndarray, classes: list[str], melanoma_class: str,
             fixed_specificity: float, fixed_sensitivity: float, calibration_bins: int,
             alert_threshold: float | None = None) -> Evaluation:
    """Every metric of one evaluation (validation or test).

    The melanoma alert fires when p(melanoma) >= a threshold: ``alert_threshold`` if given (chosen on
    validation data), else the threshold that reaches ``fixed_sensitivity`` on these labels
    (``melanoma_alert_threshold``)."""
    labels = np.asarray(labels)
    predicted = probabilities.argmax(axis=1)
    all_classes = np.arange(len(classes))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=all_classes, zero_division=0)
    aucs = np.array([_binary_auc(labels == c, probabilities[:, c]) for c in all_classes])
    per_class = pd.DataFrame({"class": classes, "precision": precision, "recall": recall, "f1": f1,
                              "support": support, "roc_auc": aucs})
    present = support > 0
    metrics = {
        "accuracy": float(accuracy_score(labels, predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),
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
            chosen = threshold_for_sensitivity(is_mel, probabilities[:, mel], fixed_sensitivity)
            threshold = chosen if alert_threshold is None else alert_threshold
            alerts = probabilities[:, mel] >= threshold
            metrics |= {"melanoma_alert_threshold": threshold,
                        "melanoma_alert_sensitivity": float(alerts[is_mel].mean()),
                        "melanoma_alert_specificity": float((~alerts[~is_mel]).mean())}
    for name, class_recall, class_f1 in zip(classes, recall, f1):
        metrics[f"recall_{metric_key(name)}"] = float(class_recall)
        metrics[f"f1_{metric_key(name)}"] = float(class_f1)
    cm = confusion_matrix(labels, predicted, labels=all_classes)
    return Evaluation(metrics=metrics, per_class=per_class, confusion=cm, probabilities=probabilities,
                      labels=labels)

