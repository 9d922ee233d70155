"""Out-of-fold predictions of a cross-validation: every Train image of the selected folds once, predicted by
the fold model that never saw it, and the metrics computed on them.

Each fold run logs the predictions of the fold it scored (the outer fold, or with ``study.nested=false`` its
validation fold) and the alert threshold it chose on its (inner) validation split; without tracking it leaves them
in ``heldout_predictions.csv`` in its folder. The melanoma alert of every
image is its own fold's threshold applied unchanged.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.entities import Run
from omegaconf import DictConfig

from melanoma_lab.evaluation.metrics import Evaluation, alert_rates, evaluate, threshold_alerts
from melanoma_lab.evaluation.scores import frequent_balanced_accuracy
from melanoma_lab.study.evaluation_log import HELD_OUT_PREDICTIONS
from melanoma_lab.tracking.run import RunTracker


def fold_predictions(fold_dir: Path, run: Run | None, tracker: RunTracker, nested: bool) -> pd.DataFrame:
    """The scored fold's predictions of one fold: from the artifacts of its FINISHED run (just trained, or reused),
    or, without tracking (never reused), from the file the fold run just wrote."""
    if run is None:
        return pd.read_csv(fold_dir / HELD_OUT_PREDICTIONS)
    prefix = "fold" if nested else "val"
    with tempfile.TemporaryDirectory() as scratch:
        table = pd.read_csv(tracker.client.download_artifacts(run.info.run_id, f"evaluation/{prefix}_predictions.csv",
                                                              scratch))
    return table.assign(alert_threshold=run.data.metrics.get("val_melanoma_alert_threshold", np.nan))


def out_of_fold(tables: dict[int, pd.DataFrame]) -> pd.DataFrame:
    """One table of the folds' predictions (1-based ``fold`` column after ``label``), ordered by path."""
    joined = pd.concat([t.assign(fold=number) for number, t in tables.items()], ignore_index=True)
    if joined["path"].duplicated().any():
        raise RuntimeError("an image was scored by two folds: the folds overlap")
    columns = ["path", "label", "fold", "alert_threshold"]
    return joined[columns + [c for c in joined.columns if c not in columns]].sort_values("path", ignore_index=True)


def probabilities_of(table: pd.DataFrame, classes: list[str]) -> np.ndarray:
    return table[[f"p_{c}" for c in classes]].to_numpy(dtype=float)


def score(table: pd.DataFrame, classes: list[str], evaluation: DictConfig, melanoma_class: str,
          alert_threshold: float | None = None) -> Evaluation:
    """Every metric of :func:`melanoma_lab.evaluation.metrics.evaluate` on these predictions (settings of the
    ``evaluation`` group, ``dataset.melanoma_class``)."""
    return evaluate(table["label"].to_numpy(), probabilities_of(table, classes), classes, melanoma_class,
                    evaluation.fixed_specificity, evaluation.fixed_sensitivity, evaluation.calibration_bins,
                    alert_threshold)


def frequent_class_metrics(table: pd.DataFrame, classes: list[str], min_images: int) -> dict[str, float]:
    """Balanced accuracy over the classes with at least ``min_images`` images in ``table`` (every Train image
    after the audit policy, for out-of-fold predictions): a class of two images has a recall of 0, 0.5 or 1 and
    swamps the mean. ``frequent_classes`` says how many classes that is."""
    labels = table["label"].to_numpy()
    counts = np.bincount(labels, minlength=len(classes))
    frequent = np.flatnonzero(counts >= min_images)
    predicted = probabilities_of(table, classes).argmax(axis=1)
    return {"balanced_accuracy_frequent": frequent_balanced_accuracy(labels, predicted, frequent),
            "frequent_classes": int(len(frequent))}


def oof_metrics(table: pd.DataFrame, classes: list[str], evaluation: DictConfig, melanoma_class: str
                ) -> dict[str, float]:
    """``oof_<metric>`` on the out-of-fold predictions; balanced accuracy over the frequent classes
    (``evaluation.frequent_class_images``); the melanoma alert of each image at its own fold's threshold (none
    where that fold had no threshold), and ``oof_folds_without_alert``."""
    metrics = score(table, classes, evaluation, melanoma_class).metrics
    metrics |= frequent_class_metrics(table, classes, evaluation.get("frequent_class_images", 10))
    melanoma = melanoma_class
    if melanoma in classes:
        thresholds = table["alert_threshold"].to_numpy(dtype=float)
        p_mel = table[f"p_{melanoma}"].to_numpy(dtype=float)
        alerts = threshold_alerts(p_mel, thresholds)
        metrics |= alert_rates(table["label"].to_numpy() == classes.index(melanoma), alerts)
        metrics["folds_without_alert"] = int(table.loc[table["alert_threshold"].isna(), "fold"].nunique())
    return {f"oof_{name}": value for name, value in metrics.items()}
