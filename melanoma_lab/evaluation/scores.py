"""The scores behind the registered metrics (:mod:`melanoma_lab.evaluation.registry`): what one set of labels and
class probabilities gives, as plain functions. scikit-learn computes every metric it has; only the operating-point
reads of the ROC curve, the expected calibration error and the frequent-class balanced accuracy are written here."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score, roc_auc_score, roc_curve


def binary_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """ROC-AUC of ``score`` for the boolean ``y_true``; NaN when only one side is present."""
    return float(roc_auc_score(y_true, score)) if 0 < y_true.sum() < len(y_true) else float("nan")


def balanced_accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    """Mean recall over the classes present in ``labels`` (scikit-learn leaves absent classes out, warning when
    one is predicted; here that is expected: ``classes_scored`` says how many classes it averages)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")
        return float(balanced_accuracy_score(labels, predicted))


def frequent_balanced_accuracy(labels: np.ndarray, predicted: np.ndarray, frequent: np.ndarray) -> float:
    """Mean recall over the ``frequent`` classes present in ``labels`` (a wrong guess of a rare class still counts
    as an error): balanced accuracy without classes too small to estimate a recall."""
    recalls = [float((predicted[labels == c] == c).mean()) for c in frequent if (labels == c).any()]
    return float(np.mean(recalls)) if recalls else float("nan")


def roc(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every point of the ROC curve, one per distinct score (``roc_curve``'s default drops collinear points,
    which can skip the operating point asked for)."""
    return roc_curve(y_true, score, drop_intermediate=False)


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


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    table = reliability_table(labels, probabilities, bins).dropna()
    return float((table["count"] * (table["accuracy"] - table["confidence"]).abs()).sum() / len(labels))
