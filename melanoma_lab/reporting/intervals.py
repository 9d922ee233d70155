"""The study report's intervals: every metric the registry shows with one there (:data:`registry.REPORT_INTERVAL`:
balanced accuracy over the frequent classes, melanoma ROC-AUC, the alert's sensitivity and specificity), as the seed
mean with its two-level bootstrap interval (:func:`melanoma_lab.reporting.statistics.report_intervals`), and what the
replicates resampled: the split's groups, or images one by one for runs that logged none."""

from __future__ import annotations

import numpy as np
import pandas as pd

from melanoma_lab.evaluation import registry
from melanoma_lab.reporting.selection import Study, StudyRun
from melanoma_lab.reporting.statistics import report_intervals

THRESHOLD = "alert_threshold"  # per image in out-of-fold predictions; a run's own (val_melanoma_alert_threshold) else
RESAMPLES = "CI resamples"


def with_threshold(table: pd.DataFrame, metrics: dict[str, float]) -> pd.DataFrame:
    """``table`` with each image's alert threshold: its own column (out of fold: each fold's), else the run's
    threshold chosen on validation (NaN: the run had none)."""
    if THRESHOLD in table.columns:
        return table
    return table.assign(**{THRESHOLD: metrics.get("val_melanoma_alert_threshold", np.nan)})


def held_out(runs: list[StudyRun], split: str) -> dict[int, pd.DataFrame]:
    """The runs' predictions of ``split`` by seed, each image with its alert threshold."""
    return {r.seed: with_threshold(r.predictions[split], r.metrics) for r in runs}


def column(name: str, frequent_class_images: int) -> str:
    """A metric's header in the report: the registry's short label (the frequent classes spelled out)."""
    metric = registry.METRICS[name]
    return (metric.short or metric.label).replace("(frequent)", f"(classes >= {frequent_class_images} images)")


def interval_cells(tables: dict[int, pd.DataFrame], study: Study, label: str, samples: int,
                   confidence: float) -> dict[str, str]:
    """``<label> <metric> <confidence> CI``: ``mean [low, high]`` of each interval metric, and ``<label> CI
    resamples``: what a replicate drew."""
    found, how = report_intervals(tables, study.classes, study.melanoma_class, samples, confidence,
                                  study.frequent_class_images)
    cells = {f"{label} {column(name, study.frequent_class_images)} {confidence:.0%} CI":
             f"{mean:.3f} [{low:.3f}, {high:.3f}]" for name, (mean, low, high) in found.items()}
    return cells | {f"{label} {RESAMPLES}": how}
