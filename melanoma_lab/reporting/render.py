"""Writing the study report: ``report.md`` (figures as PNG files beside it) and ``report.html`` (figures
embedded), from a loaded :class:`~melanoma_lab.reporting.selection.Study`."""

from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from melanoma_lab.evaluation import plots
from melanoma_lab.data.audit import summary as audit_summary
from melanoma_lab.reporting.decisions import DECISION_TAG, TITLE as SELECTION_TITLE, selection_note, selection_table
from melanoma_lab.reporting.selection import Study
from melanoma_lab.reporting.statistics import probabilities
from melanoma_lab.data.staging import write_atomically
from melanoma_lab.reporting.tables import (class_recall, comparisons, conclusions, cross_validation_table,
                                           full_and_clean_table, results_table)

INTERVAL_NOTE = ("Values are mean ± sd over seeds. Each CI is a two-level percentile bootstrap of the seed-mean: "
                 "every replicate draws the seeds with replacement and one resample of the held-out images' split "
                 "groups (copies and one lesion's images drawn together) that is applied to all of them (the seeds "
                 "share those images), so it includes seed-to-seed (training) variance and the finite held-out set, "
                 "not a different split or dataset. Runs that logged no split group are resampled image by image "
                 "(too narrow where images are correlated): the 'CI resamples' columns say which.")
CLEAN_NOTE = ("Clean: the held-out images without a byte-identical or near (pHash) copy in Train "
              "(`train_twin` false in the predictions); n/a for runs that did not log that column.")


def figures(study: Study) -> dict[str, Figure]:
    names = study.experiments
    mean_history = {name: {k: _mean_curve([r.history[k] for r in study.of(name)])
                           for k in ("accuracy", "val_accuracy", "loss", "val_loss")} for name in names}
    confusion = {}
    for name in names:
        total = np.zeros((len(study.classes),) * 2, dtype=int)
        for r in study.of(name):
            table = r.predictions[study.held_out]
            np.add.at(total, (table["label"].to_numpy(), probabilities(table).argmax(axis=1)), 1)
        confusion[name] = total
    recalls = {name: [class_recall(study, study.of(name), [c]) for c in study.classes] for name in names}
    return {"learning_curves.png": plots.overlaid_learning_curves(mean_history),
            "confusion_matrices.png": plots.confusion_matrices_side_by_side(confusion, study.classes),
            "per_class_recall.png": plots.per_class_recall(recalls, study.classes)}


def _mean_curve(series: list[list[float]]) -> np.ndarray:
    """Epoch-wise mean over seeds (runs of different lengths padded with NaN); empty for runs without epochs
    (a cross-validation parent: its folds have the curves)."""
    if not any(series):
        return np.array([])
    return np.nanmean(_pad(series), axis=0)


def _pad(series: list[list[float]]) -> np.ndarray:
    longest = max(len(s) for s in series)
    return np.array([s + [np.nan] * (longest - len(s)) for s in series])


def _figure_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def _md_bold(text: str) -> str:
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)


def runtime_table(study: Study) -> pd.DataFrame:
    return pd.DataFrame([{"tag": tag, "values over the study's runs": values}
                         for tag, values in study.runtime().items()])


def write_report(study: Study, out_dir: Path, samples: int = 1000, confidence: float = 0.95) -> Path:
    """Write report.md (+ PNGs) and report.html into ``out_dir``; returns the markdown path."""
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    tables = {"Results": results_table(study, samples, confidence)}
    if study.held_out == "test":
        tables["Full vs clean Test"] = full_and_clean_table(study, samples, confidence)
    cv_table = cross_validation_table(study)
    if len(cv_table):
        tables["Cross-validation (mean ± sd over folds; OOF: out-of-fold predictions; ensemble: the fold ensemble's "
               f"own numbers with {confidence:.0%} group-bootstrap intervals)"] = cv_table
    if study.held_out == "oof":
        tables[SELECTION_TITLE] = selection_table(study)
    notes = {"Full vs clean Test": CLEAN_NOTE, SELECTION_TITLE: selection_note(study)}
    lines = conclusions(study, comparisons(study, samples, confidence))
    images = {}
    for name, figure in figures(study).items():
        images[name] = _figure_bytes(figure)
        plt.close(figure)
        write_atomically(out_dir / name, images[name])
    audit_text = audit_summary(study.audit) if study.audit else "no audit logged"
    held = {"test": "Test split", "oof": "out-of-fold predictions of each cross-validation (every Train image once)",
            "val": "own validation split (no Test split in this dataset)"}[study.held_out]
    intro = (f"{len(study.runs)} runs launched by the study (one per experiment and seed); experiments "
             f"{', '.join(study.experiments)}; held-out data: {held}.")
    runs = pd.DataFrame([{"experiment": r.experiment, "seed": r.seed, "run_id": r.run_id,
                          "config_hash": r.tags.get("config_hash", ""),
                          "code_version": r.tags.get("code_version", "not logged"),
                          "informed a decision": r.tags.get(DECISION_TAG, "")} for r in study.runs])
    left_out = ["## Runs left out", "", study.dropped.to_markdown(index=False), ""] if len(study.dropped) else []
    runtime = runtime_table(study)
    md = [f"# Study report: {study.name}", "", intro, "", "## Hardware and runtime", "",
          runtime.to_markdown(index=False), "", INTERVAL_NOTE, ""]
    for title, table in tables.items():
        md += [f"## {title}", "", table.to_markdown(index=False), ""]
        if title in notes:
            md += [notes[title], ""]
    md += ["## Conclusions", "", *[f"- {line}" for line in lines], "", "## Learning curves (mean over seeds)", "",
           "![learning curves](learning_curves.png)", "", "## Confusion matrices (summed over seeds)", "",
           "![confusion matrices](confusion_matrices.png)", "", "## Per-class recall", "",
           "![per-class recall](per_class_recall.png)", "", "## Data audit", "", "```", audit_text, "```", "",
           "## Runs", "", runs.to_markdown(index=False), "", *left_out]
    write_atomically(out_dir / "report.md", "\n".join(md).encode())

    body = [f"<h1>Study report: {html.escape(study.name)}</h1>", f"<p>{html.escape(intro)}</p>",
            "<h2>Hardware and runtime</h2>", runtime.to_html(index=False, border=0),
            f"<p>{html.escape(INTERVAL_NOTE)}</p>"]
    for title, table in tables.items():
        body += [f"<h2>{html.escape(title)}</h2>", table.to_html(index=False, border=0)]
        if title in notes:
            body.append(f"<p>{html.escape(notes[title])}</p>")
    body += ["<h2>Conclusions</h2><ul>", *[f"<li>{_md_bold(html.escape(line))}</li>" for line in lines], "</ul>"]
    for title, name in (("Learning curves", "learning_curves.png"), ("Confusion matrices", "confusion_matrices.png"),
                        ("Per-class recall", "per_class_recall.png")):
        encoded = base64.b64encode(images[name]).decode()
        body.append(f"<h2>{title}</h2><img alt='{title}' src='data:image/png;base64,{encoded}' style='max-width:100%'>")
    body.append(f"<h2>Data audit</h2><pre>{html.escape(audit_text)}</pre>")
    body += ["<h2>Runs</h2>", runs.to_html(index=False, border=0)]
    if len(study.dropped):
        body += ["<h2>Runs left out</h2>", study.dropped.to_html(index=False, border=0)]
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(study.name) +
            "</title><style>body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse}"
            "td,th{padding:4px 8px;border-bottom:1px solid #ddd;text-align:left}</style></head><body>" +
            "\n".join(body) + "</body></html>")
    write_atomically(out_dir / "report.html", page.encode())
    return out_dir / "report.md"
