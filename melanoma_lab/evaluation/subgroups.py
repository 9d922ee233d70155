"""Performance by subgroup, where a dataset carries metadata (HAM10000: age, sex, localization; ISIC 2019:
age_approx, sex, anatom_site_general; any manifest column named in ``dataset.source.metadata_columns``).

The catalog keeps those columns as ``meta_<name>``; every scored split with them gets a table (one row per value of
each column; numeric ages in ``evaluation.age_bins``): images, melanoma images, balanced accuracy with a bootstrap
interval, and the melanoma alert's sensitivity and specificity at the model's threshold with Wilson intervals.
A subgroup with fewer than ``evaluation.subgroup_min_images`` images is listed as too small, not scored."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from melanoma_lab.evaluation.scores import frequent_balanced_accuracy

PREFIX = "meta_"
AGE_COLUMNS = ("age", "age_approx")
TOO_SMALL = "too small to score"


def metadata_columns(files: pd.DataFrame) -> list[str]:
    """The metadata columns of a catalog's files (``meta_<name>``) that hold any value."""
    return [c for c in files.columns if c.startswith(PREFIX) and files[c].astype(str).str.strip().ne("").any()]


def _values(column: pd.Series, name: str, age_bins: list[float]) -> pd.Series:
    """The subgroup of each row: the value, or for an age its bin (e.g. 45-59); '' (missing) as 'unknown'."""
    text = column.astype(str).str.strip()
    if name in AGE_COLUMNS:
        ages = pd.to_numeric(text, errors="coerce")
        edges = list(age_bins)
        labels = [f"{int(lo)}-{int(hi) - 1}" for lo, hi in zip(edges[:-1], edges[1:])]
        binned = pd.cut(ages, edges, right=False, labels=labels).astype(object)
        return binned.where(binned.notna(), "unknown")
    return text.where(text != "", "unknown")


def _wilson(successes: int, trials: int, confidence: float) -> tuple[float, float]:
    if trials == 0:
        return float("nan"), float("nan")
    interval = binomtest(successes, trials).proportion_ci(confidence, method="wilson")
    return float(interval.low), float(interval.high)


def subgroup_table(files: pd.DataFrame, labels: np.ndarray, probabilities: np.ndarray, classes: list[str],
                   melanoma_class: str, threshold: float | None, min_images: int, age_bins: list[float],
                   samples: int = 500, confidence: float = 0.95, seed: int = 0) -> pd.DataFrame | None:
    """The subgroup table of one scored split (rows of ``files`` aligned with ``labels`` and ``probabilities``);
    None when the split has no metadata."""
    columns = metadata_columns(files)
    if not columns:
        return None
    labels, predicted = np.asarray(labels), np.asarray(probabilities).argmax(axis=1)
    melanoma = classes.index(melanoma_class) if melanoma_class in classes else None
    is_melanoma = labels == melanoma if melanoma is not None else np.zeros(len(labels), bool)
    alerts = (np.asarray(probabilities)[:, melanoma] >= threshold if melanoma is not None and threshold is not None
              else None)
    every = np.arange(len(classes))
    rng, alpha = np.random.default_rng(seed), (1 - confidence) / 2
    rows = []
    for column in columns:
        name = column.removeprefix(PREFIX)
        groups = _values(files[column].reset_index(drop=True), name, age_bins)
        for value in sorted(groups.unique(), key=str):
            index = np.flatnonzero((groups == value).to_numpy())
            row = {"column": name, "subgroup": value, "images": len(index),
                   "melanoma_images": int(is_melanoma[index].sum())}
            if len(index) < min_images:
                rows.append(row | {"status": TOO_SMALL})
                continue
            y, p = labels[index], predicted[index]
            draws = rng.integers(0, len(index), (samples, len(index)))
            boot = [frequent_balanced_accuracy(y[d], p[d], every) for d in draws]
            row |= {"status": "scored", "balanced_accuracy": frequent_balanced_accuracy(y, p, every),
                    "balanced_accuracy_low": float(np.nanquantile(boot, alpha)),
                    "balanced_accuracy_high": float(np.nanquantile(boot, 1 - alpha))}
            if alerts is not None:
                mel, other = index[is_melanoma[index]], index[~is_melanoma[index]]
                hits, passes = int(alerts[mel].sum()), int((~alerts[other]).sum())
                row |= {"melanoma_alert_sensitivity": hits / len(mel) if len(mel) else float("nan"),
                        "melanoma_alert_specificity": passes / len(other) if len(other) else float("nan")}
                (row["melanoma_alert_sensitivity_low"], row["melanoma_alert_sensitivity_high"]) = _wilson(
                    hits, len(mel), confidence)
                (row["melanoma_alert_specificity_low"], row["melanoma_alert_specificity_high"]) = _wilson(
                    passes, len(other), confidence)
            rows.append(row)
    return pd.DataFrame(rows)


def render(table: pd.DataFrame) -> str:
    """The subgroup table in Markdown (what the model card quotes)."""
    def cell(row: pd.Series, key: str) -> str:
        value = row.get(key)
        if value is None or pd.isna(value):
            return ""
        return f"{value:.3f} [{row[key + '_low']:.3f}, {row[key + '_high']:.3f}]"

    lines = ["| column | subgroup | images | melanoma | balanced accuracy | alert sensitivity | alert specificity |",
             "|---|---|---|---|---|---|---|"]
    for _, row in table.iterrows():
        scored = row["status"] == "scored"
        lines.append(f"| {row['column']} | {row['subgroup']} | {row['images']} | {row['melanoma_images']} | "
                     + (" | ".join(cell(row, k) for k in ("balanced_accuracy", "melanoma_alert_sensitivity",
                                                          "melanoma_alert_specificity")) if scored
                        else f"{TOO_SMALL} | | ") + " |")
    return "\n".join(lines) + "\n"


def log_subgroups(tracker, prefix: str, files: pd.DataFrame, labels: np.ndarray, probabilities: np.ndarray,
                  classes: list[str], melanoma_class: str, threshold: float | None, evaluation) -> None:
    """Log the subgroup table of a scored split as ``evaluation/<prefix>_subgroups.csv`` and ``.md`` (nothing
    when the split has no metadata)."""
    table = subgroup_table(files, labels, probabilities, classes, melanoma_class, threshold,
                           evaluation.subgroup_min_images, list(evaluation.age_bins))
    if table is not None:
        tracker.log_table(table, f"evaluation/{prefix}_subgroups.csv")
        tracker.log_text(render(table), f"evaluation/{prefix}_subgroups.md")
