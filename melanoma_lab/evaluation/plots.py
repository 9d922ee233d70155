"""Every figure, as pure functions: data in, matplotlib Figure out (nothing is saved or logged here)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402


def learning_curves(history: dict[str, list[float]], title: str = "") -> Figure:
    """Accuracy and loss per epoch, training vs validation."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes, ("accuracy", "loss")):
        for prefix, label in (("", "train"), ("val_", "validation")):
            values = history.get(prefix + metric, [])
            ax.plot(range(1, len(values) + 1), values, marker="o", ms=3, label=label)
        ax.set(xlabel="epoch", ylabel=metric, title=f"{title} {metric}".strip())
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def confusion_matrices(cm: np.ndarray, classes: list[str], title: str = "") -> Figure:
    """Counts and row-normalised (recall) confusion matrices side by side."""
    normalised = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, axes = plt.subplots(1, 2, figsize=(17, 7.5))
    for ax, matrix, fmt, name in ((axes[0], cm, "d", "counts"), (axes[1], normalised, ".2f", "row-normalised")):
        image = ax.imshow(matrix, cmap="Blues")
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
        ax.set_yticks(range(len(classes)), classes)
        ax.set(xlabel="predicted", ylabel="true", title=f"{title} ({name})".strip())
        threshold = matrix.max() / 2 if matrix.size else 0
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, format(value, fmt), ha="center", va="center", fontsize=8,
                    color="white" if value > threshold else "black")
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def class_distribution(before: dict[str, int], after: dict[str, int]) -> Figure:
    """Training images per class before and after rebalancing."""
    classes = list(before)
    x = np.arange(len(classes))
    fig, ax = plt.subplots(figsize=(11, 4.5))
    ax.bar(x - 0.2, [before[c] for c in classes], 0.4, label="before rebalancing")
    ax.bar(x + 0.2, [after.get(c, 0) for c in classes], 0.4, label="after rebalancing")
    ax.set_xticks(x, classes, rotation=30, ha="right")
    ax.set(ylabel="training images", title="Class distribution of the training split")
    ax.legend()
    fig.tight_layout()
    return fig


def sample_grid(images: np.ndarray, labels: np.ndarray, classes: list[str]) -> Figure:
    """One training image per class."""
    fig, axes = plt.subplots(1, len(classes), figsize=(2 * len(classes), 2.6))
    for ax, (index, name) in zip(np.atleast_1d(axes), enumerate(classes)):
        members = np.flatnonzero(labels == index)
        if members.size:
            ax.imshow(images[members[0]])
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    return fig


def roc_curves(labels: np.ndarray, probabilities: np.ndarray, classes: list[str], title: str = "",
               highlight: str | None = None) -> Figure:
    """One-vs-rest ROC curve per class; the ``highlight`` class (the dataset's melanoma class) drawn bold."""
    fig, ax = plt.subplots(figsize=(6.5, 6))
    for index, name in enumerate(classes):
        positives = labels == index
        if 0 < positives.sum() < len(labels):
            fpr, tpr, _ = roc_curve(positives, probabilities[:, index])
            ax.plot(fpr, tpr, lw=2.5 if name == highlight else 1, label=name)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC one-vs-rest {title}".strip())
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def reliability_diagram(table: pd.DataFrame, title: str = "") -> Figure:
    """Accuracy vs confidence per bin (from evaluation.reliability_table)."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    centres = (table["bin_low"] + table["bin_high"]) / 2
    ax.bar(centres, table["accuracy"].fillna(0), width=table["bin_high"] - table["bin_low"], edgecolor="k",
           alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
           title=f"Reliability {title}".strip())
    ax.legend()
    fig.tight_layout()
    return fig


def overlaid_learning_curves(histories: dict[str, dict[str, np.ndarray]]) -> Figure:
    """Validation (solid) and training (dashed) accuracy and loss of several experiments on shared axes."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for index, (name, history) in enumerate(histories.items()):
        colour = f"C{index}"
        for ax, metric in zip(axes, ("accuracy", "loss")):
            ax.plot(np.arange(1, len(history[f"val_{metric}"]) + 1), history[f"val_{metric}"], color=colour,
                    label=f"{name} validation")
            ax.plot(np.arange(1, len(history[metric]) + 1), history[metric], color=colour, ls="--",
                    label=f"{name} train")
    for ax, metric in zip(axes, ("accuracy", "loss")):
        ax.set(xlabel="epoch", ylabel=metric, title=metric)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def confusion_matrices_side_by_side(matrices: dict[str, np.ndarray], classes: list[str]) -> Figure:
    """Row-normalised confusion matrices of several experiments."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(6.2 * len(matrices), 6), squeeze=False)
    for ax, (name, cm) in zip(axes[0], matrices.items()):
        normalised = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(classes)), classes, fontsize=7)
        ax.set(xlabel="predicted", ylabel="true", title=name)
        for (i, j), value in np.ndenumerate(normalised):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6,
                    color="white" if value > 0.5 else "black")
    fig.tight_layout()
    return fig


def per_class_recall(recalls: dict[str, list[float]], classes: list[str]) -> Figure:
    """Grouped bars: recall of every class, one bar per experiment."""
    fig, ax = plt.subplots(figsize=(12, 4.5))
    width = 0.8 / max(len(recalls), 1)
    x = np.arange(len(classes))
    for index, (name, values) in enumerate(recalls.items()):
        ax.bar(x + (index - (len(recalls) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x, classes, rotation=30, ha="right")
    ax.set(ylabel="recall", ylim=(0, 1), title="Per-class recall")
    ax.legend()
    fig.tight_layout()
    return fig
