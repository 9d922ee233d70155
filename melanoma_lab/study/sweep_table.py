"""The table a ``--multirun`` sweep ends with: what it ran, side by side, and where to look at it in MLflow.

Built from the sweep's summary (:func:`melanoma_lab.study.sweep.summary_table`: the newest child run of each job,
read from MLflow, plus the jobs that failed before their run started), so it says what the store holds.
"""

from __future__ import annotations

import math
from urllib.parse import urlparse

import pandas as pd

from melanoma_lab.tracking.server import LOOPBACK, PORT

# heading -> the run metrics it shows, the first one a run has (a cross-validation's child logs fold_*)
COLUMNS = {"val bacc": ("val_balanced_accuracy", "fold_balanced_accuracy"),
           "test bacc": ("test_balanced_accuracy",),
           "val mel AUC": ("val_melanoma_roc_auc", "fold_melanoma_roc_auc"),
           "test mel AUC": ("test_melanoma_roc_auc",)}
TABLE_METRICS = tuple(name for names in COLUMNS.values() for name in names)
# the overrides that choose the tracking store: `melanoma-lab ui` needs them to open the sweep's
STORE_OVERRIDES = ("paths.root_dir=", "paths.mlruns_dir=", "tracking.tracking_uri=")


def _value(row: pd.Series, names: tuple[str, ...]) -> str:
    for name in names:
        value = row.get(name)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            return f"{value:.4f}"
    return "-"


def _text(value: object) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def runs_table(summary: pd.DataFrame) -> str:
    """One line per job of ``summary``: experiment, run id, status and :data:`COLUMNS`, aligned."""
    header = ["experiment", "run id", "status", *COLUMNS]
    rows = [[_text(row.get("experiment")), _text(row.get("run_id")), _text(row.get("status")),
             *(_value(row, names) for names in COLUMNS.values())] for _, row in summary.iterrows()]
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
                     for line in [header, *rows])


def ui_link(tracking_uri: str, experiment_id: str, run_id: str, overrides: list[str]) -> str:
    """Where the MLflow UI shows run ``run_id`` (a sweep's parent lists its jobs): a tracking server's own page,
    or ``melanoma-lab ui`` over the local store (with the sweep's store overrides) and its loopback address."""
    page = f"#/experiments/{experiment_id}/runs/{run_id}"
    if urlparse(tracking_uri).scheme in ("http", "https"):
        return f"{tracking_uri.rstrip('/')}/{page}"
    store = [override for override in overrides if override.startswith(STORE_OVERRIDES)]
    return f"{' '.join(['melanoma-lab ui', *store])}  ->  http://{LOOPBACK}:{PORT}/{page}"


def sweep_report(summary: pd.DataFrame, parent_run_id: str, link: str) -> str:
    """The runs table under a heading naming the parent run, and the MLflow UI link."""
    return (f"\nsweep {parent_run_id}: {len(summary)} runs\n{runs_table(summary)}\n"
            f"MLflow UI: {link}")
