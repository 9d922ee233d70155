"""The study report, built only from what MLflow holds (no retraining).

    python -m melanoma_lab.report --study NAME [--tracking-uri URI] [--out DIR]

Writes ``report.md`` (figures as PNG files beside it) and ``report.html`` (figures embedded) with: a
results table (validation vs held-out test, accuracy vs balanced accuracy, melanoma sensitivity /
specificity / AUC, train-validation gap) as mean ± sd over seeds with bootstrap confidence intervals,
paired comparisons between consecutive experiments, overlaid learning curves, confusion matrices side
by side, per-class recall, the data audit, and conclusions computed from those numbers.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from mlflow.tracking import MlflowClient
from sklearn.metrics import balanced_accuracy_score

from melanoma_lab import plots
from melanoma_lab.audit import summary as audit_summary

HEADLINE = ["accuracy", "balanced_accuracy", "macro_f1", "melanoma_sensitivity", "melanoma_specificity",
            "melanoma_roc_auc", "ece"]


@dataclass
class StudyRun:
    run_id: str
    experiment: str
    seed: int
    params: dict[str, str]
    metrics: dict[str, float]
    history: dict[str, list[float]]
    predictions: dict[str, pd.DataFrame]  # split -> path, label, p_<class>...


@dataclass
class Study:
    name: str
    runs: list[StudyRun]
    classes: list[str]
    audit: dict | None
    held_out: str  # "test" when the dataset has a Test split, else "val"
    cross_validation: pd.DataFrame  # one row per cross-validation parent run (cv_mean_/cv_sd_ metrics)

    @property
    def experiments(self) -> list[str]:
        """Experiment names in the order the study ran them."""
        return list(dict.fromkeys(r.experiment for r in self.runs))

    def of(self, experiment: str) -> list[StudyRun]:
        return sorted((r for r in self.runs if r.experiment == experiment), key=lambda r: r.seed)


def load_study(client: MlflowClient, name: str) -> Study:
    """Every FINISHED run of the study's MLflow experiment, with its predictions and history."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        raise LookupError(f"no MLflow experiment named {name!r}: run the study first (make reproduce)")
    found = client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'",
                               order_by=["start_time ASC"], max_results=5000)
    runs, classes, audit = [], [], None
    cv_rows = []
    for run in found:
        run_id = run.info.run_id
        if "cv_folds" in run.data.tags:
            cv_rows.append({"experiment": run.data.tags.get("experiment"), "folds": int(run.data.tags["cv_folds"]),
                            "seed": run.data.tags.get("seed"), **run.data.metrics})
            continue
        if "fold" in run.data.tags:
            continue  # a fold of a cross-validation: summarised by its parent
        artifacts = {a.path for a in client.list_artifacts(run_id, "evaluation")}
        predictions = {}
        for split in ("val", "test"):
            if f"evaluation/{split}_predictions.csv" in artifacts:
                local = client.download_artifacts(run_id, f"evaluation/{split}_predictions.csv")
                predictions[split] = pd.read_csv(local)
        if "val" not in predictions:
            continue
        classes = [c[2:] for c in predictions["val"].columns if c.startswith("p_")]
        history = {key: [m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]
                   for key in ("loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds")}
        if audit is None:
            audit = json.loads(Path(client.download_artifacts(run_id, "data_audit.json")).read_text())
        runs.append(StudyRun(run_id, run.data.tags.get("experiment", run.info.run_name),
                             int(run.data.tags.get("seed", 0)), dict(run.data.params), dict(run.data.metrics), history,
                             predictions))
    if not runs:
        raise LookupError(f"experiment {name!r} has no FINISHED runs with predictions")
    held_out = "test" if all("test" in r.predictions for r in runs) else "val"
    return Study(name, runs, classes, audit, held_out, pd.DataFrame(cv_rows))


def _probabilities(table: pd.DataFrame) -> np.ndarray:
    return table[[c for c in table.columns if c.startswith("p_")]].to_numpy()


def balanced_accuracy_of(table: pd.DataFrame) -> float:
    return float(balanced_accuracy_score(table["label"], _probabilities(table).argmax(axis=1)))


def bootstrap_interval(tables: list[pd.DataFrame], samples: int, confidence: float, seed: int = 0) -> tuple[float, float]:
    """CI of the seed-mean balanced accuracy, resampling each seed's held-out images with replacement."""
    rng = np.random.default_rng(seed)
    labels = [t["label"].to_numpy() for t in tables]
    predicted = [_probabilities(t).argmax(axis=1) for t in tables]
    means = []
    for _ in range(samples):
        scores = []
        for y, p in zip(labels, predicted):
            index = rng.integers(0, len(y), len(y))
            scores.append(balanced_accuracy_score(y[index], p[index]))
        means.append(np.mean(scores))
    alpha = (1 - confidence) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def paired_difference(a: list[pd.DataFrame], b: list[pd.DataFrame], samples: int, confidence: float,
                      seed: int = 0) -> dict[str, float]:
    """Balanced accuracy of B minus A on the held-out images both were evaluated on (paired by seed), with
    a bootstrap CI and the share of resamples in which B is not better (a one-sided bootstrap p-value).

    Runs with the same seed and data share their held-out images; when the splits differ (e.g. one run
    dropped label conflicts) only the images held out from both are compared (``images`` says how many)."""
    rng = np.random.default_rng(seed)
    pairs = []
    for table_a, table_b in zip(a, b):
        common = table_a.merge(table_b, on=["path", "label"], suffixes=("_a", "_b"))
        if common.empty:
            raise ValueError("paired comparison needs held-out images that both runs were evaluated on")
        columns_a = [c for c in common.columns if c.startswith("p_") and c.endswith("_a")]
        columns_b = [c for c in common.columns if c.startswith("p_") and c.endswith("_b")]
        pairs.append((common["label"].to_numpy(), common[columns_a].to_numpy().argmax(axis=1),
                      common[columns_b].to_numpy().argmax(axis=1)))
    observed = np.mean([balanced_accuracy_score(y, pb) - balanced_accuracy_score(y, pa) for y, pa, pb in pairs])
    deltas = []
    for _ in range(samples):
        per_seed = []
        for y, pa, pb in pairs:
            index = rng.integers(0, len(y), len(y))
            per_seed.append(balanced_accuracy_score(y[index], pb[index]) - balanced_accuracy_score(y[index], pa[index]))
        deltas.append(np.mean(per_seed))
    alpha = (1 - confidence) / 2
    return {"delta": float(observed), "low": float(np.quantile(deltas, alpha)),
            "high": float(np.quantile(deltas, 1 - alpha)), "p_not_better": float(np.mean(np.array(deltas) <= 0)),
            "images": int(sum(len(y) for y, _, _ in pairs))}


def _median_epoch_seconds(runs: list[StudyRun]) -> str:
    seconds = [t for r in runs for t in r.history.get("epoch_seconds", [])]
    return f"{np.median(seconds):.1f}" if seconds else "n/a"


def _mean_sd(values: list[float | None], form: str = ".3f") -> str:
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return "n/a"
    return f"{np.mean(values):{form}} ± {np.std(values, ddof=1) if len(values) > 1 else 0.0:{form}}"


def _share(metrics: dict[str, float], part: str, whole: str) -> float | None:
    """``metrics[part] / metrics[whole]`` (None when a run predates either metric)."""
    return metrics[part] / metrics[whole] if part in metrics and metrics.get(whole) else None


def results_table(study: Study, samples: int, confidence: float) -> pd.DataFrame:
    rows = []
    for name in study.experiments:
        runs = study.of(name)
        row = {"experiment": name, "seeds": len(runs),
               "val accuracy": _mean_sd([r.metrics.get("final_val_accuracy") for r in runs]),
               "val balanced acc": _mean_sd([r.metrics.get("val_balanced_accuracy") for r in runs]),
               "train-val gap": _mean_sd([r.metrics.get("train_val_accuracy_gap") for r in runs]),
               "s/epoch (median)": _median_epoch_seconds(runs),
               "run s": _mean_sd([r.metrics.get("run_seconds") for r in runs], ".0f"),
               "tracking share": _mean_sd([_share(r.metrics, "tracking_seconds", "run_seconds") for r in runs])}
        if study.held_out == "test":
            for metric in HEADLINE:
                row[f"test {metric.replace('_', ' ')}"] = _mean_sd([r.metrics.get(f"test_{metric}") for r in runs])
        else:
            for metric in HEADLINE[2:]:
                row[f"val {metric.replace('_', ' ')}"] = _mean_sd([r.metrics.get(f"val_{metric}") for r in runs])
        low, high = bootstrap_interval([r.predictions[study.held_out] for r in runs], samples, confidence)
        row[f"{study.held_out} balanced acc {confidence:.0%} CI"] = f"[{low:.3f}, {high:.3f}]"
        if "melanoma" in study.classes:
            row["melanomas found (per seed)"] = ", ".join(
                _melanomas_found(r.predictions[study.held_out], study.classes.index("melanoma")) for r in runs)
        rows.append(row)
    return pd.DataFrame(rows)


def _short(value: str | None, width: int = 40) -> str:
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _melanomas_found(table: pd.DataFrame, melanoma: int) -> str:
    is_melanoma = table["label"].to_numpy() == melanoma
    flagged = _probabilities(table).argmax(axis=1) == melanoma
    return f"{int((is_melanoma & flagged).sum())}/{int(is_melanoma.sum())}"


CV_COLUMNS = {"val balanced acc": "val_balanced_accuracy", "val accuracy": "final_val_accuracy",
              "melanoma sensitivity": "val_melanoma_sensitivity", "melanoma ROC-AUC": "val_melanoma_roc_auc",
              "melanoma spec @ sens 0.9": "val_melanoma_specificity_at_sens_0.9", "macro F1": "val_macro_f1"}


def cross_validation_table(study: Study) -> pd.DataFrame:
    """Cross-validation parents: mean ± sd over folds of the validation metrics."""
    rows = []
    for row in study.cross_validation.to_dict("records"):
        out = {"experiment": row["experiment"], "folds": row["folds"], "seed": row["seed"]}
        for label, key in CV_COLUMNS.items():
            mean, sd = row.get(f"cv_mean_{key}"), row.get(f"cv_sd_{key}")
            out[label] = "n/a" if mean is None or pd.isna(mean) else f"{mean:.3f} ± {sd:.3f}"
        rows.append(out)
    return pd.DataFrame(rows)


def changed_params(a: StudyRun, b: StudyRun) -> list[str]:
    """Config values that differ between two runs (ignoring seed and bookkeeping)."""
    ignore = re.compile(r"^(name|trainer\.seed|paths\.|tracking\.|study\.)")
    keys = sorted(set(a.params) | set(b.params))
    return [f"{k}: {_short(a.params.get(k))} → {_short(b.params.get(k))}" for k in keys
            if not ignore.match(k) and a.params.get(k) != b.params.get(k)]


def comparisons(study: Study, samples: int, confidence: float) -> list[dict]:
    out = []
    names = study.experiments
    for first, second in zip(names, names[1:]):
        a, b = study.of(first), study.of(second)
        common = sorted({r.seed for r in a} & {r.seed for r in b})
        a = [r for r in a if r.seed in common]
        b = [r for r in b if r.seed in common]
        if not common:
            continue
        diff = paired_difference([r.predictions[study.held_out] for r in a],
                                 [r.predictions[study.held_out] for r in b], samples, confidence)
        out.append({"from": first, "to": second, "seeds": common, "changes": changed_params(a[0], b[0]), **diff,
                    "gap_from": float(np.mean([r.metrics.get("train_val_accuracy_gap", np.nan) for r in a])),
                    "gap_to": float(np.mean([r.metrics.get("train_val_accuracy_gap", np.nan) for r in b])),
                    "rare_recall_from": _rare_recall(study, a), "rare_recall_to": _rare_recall(study, b)})
    return out


def _rarest_classes(study: Study, k: int = 3) -> list[str]:
    counts = (study.audit or {}).get("class_counts", {}).get("train", {})
    ranked = sorted(study.classes, key=lambda c: counts.get(c, 0))
    return ranked[:k]


def _rare_recall(study: Study, runs: list[StudyRun]) -> float:
    keys = [f"{study.held_out}_recall_{c.replace(' ', '_')}" for c in _rarest_classes(study)]
    return float(np.mean([r.metrics.get(k, np.nan) for r in runs for k in keys]))


def conclusions(study: Study, compared: list[dict]) -> list[str]:
    lines = []
    for name in study.experiments:
        runs = study.of(name)
        gap = np.mean([r.metrics.get("train_val_accuracy_gap", np.nan) for r in runs])
        best_epochs = [int(np.argmin(r.history["val_loss"])) + 1 for r in runs if r.history["val_loss"]]
        epochs = [len(r.history["val_loss"]) for r in runs]
        verdict = "overfits" if gap > 0.10 else "does not overfit much"
        lines.append(f"**{name}** {verdict}: train-validation accuracy gap {gap:.3f} at the best epoch; validation "
                     f"loss bottomed out at epoch {np.mean(best_epochs):.1f} of {np.mean(epochs):.0f}.")
    rare = ", ".join(_rarest_classes(study))
    for c in compared:
        better = "better than" if c["low"] > 0 else ("worse than" if c["high"] < 0 else "not distinguishable from")
        lines.append(
            f"**{c['to']} vs {c['from']}** ({'; '.join(c['changes']) or 'same config'}): {study.held_out} balanced "
            f"accuracy {c['delta']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}] on {c['images']} paired images — "
            f"{c['to']} is {better} {c['from']}"
            f" (bootstrap p(not better) = {c['p_not_better']:.3f}); train-validation gap {c['gap_from']:.3f} → "
            f"{c['gap_to']:.3f} ({'reduced' if c['gap_to'] < c['gap_from'] else 'not reduced'}); recall of the "
            f"rarest classes ({rare}) {c['rare_recall_from']:.3f} → {c['rare_recall_to']:.3f} "
            f"({'lifted' if c['rare_recall_to'] > c['rare_recall_from'] else 'not lifted'}).")
    if study.held_out == "val":
        lines.append("This dataset has no Test split: every number above is on each seed's own validation split, "
                     "which also chose the best epoch. Expect held-out test numbers to be lower.")
    return lines


def figures(study: Study) -> dict[str, Figure]:
    names = study.experiments
    mean_history = {name: {k: np.nanmean(_pad([r.history[k] for r in study.of(name)]), axis=0)
                           for k in ("accuracy", "val_accuracy", "loss", "val_loss")} for name in names}
    confusion = {}
    for name in names:
        total = np.zeros((len(study.classes),) * 2, dtype=int)
        for r in study.of(name):
            table = r.predictions[study.held_out]
            predicted = _probabilities(table).argmax(axis=1)
            np.add.at(total, (table["label"].to_numpy(), predicted), 1)
        confusion[name] = total
    recalls = {name: [float(np.mean([r.metrics.get(f"{study.held_out}_recall_{c.replace(' ', '_')}", np.nan)
                                     for r in study.of(name)])) for c in study.classes] for name in names}
    return {"learning_curves.png": plots.overlaid_learning_curves(mean_history),
            "confusion_matrices.png": plots.confusion_matrices_side_by_side(confusion, study.classes),
            "per_class_recall.png": plots.per_class_recall(recalls, study.classes)}


def _pad(series: list[list[float]]) -> np.ndarray:
    longest = max(len(s) for s in series)
    return np.array([s + [np.nan] * (longest - len(s)) for s in series])


def _figure_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def _atomic_write(path: Path, data: bytes) -> None:
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_bytes(data)
    os.replace(staging, path)


def write_report(study: Study, out_dir: Path, samples: int = 1000, confidence: float = 0.95) -> Path:
    """Write report.md (+ PNGs) and report.html into ``out_dir``; returns the markdown path."""
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    table = results_table(study, samples, confidence)
    compared = comparisons(study, samples, confidence)
    lines = conclusions(study, compared)
    images = {}
    for name, figure in figures(study).items():
        images[name] = _figure_bytes(figure)
        plt.close(figure)
        _atomic_write(out_dir / name, images[name])
    audit_text = audit_summary(study.audit) if study.audit else "no audit logged"
    cv_table = cross_validation_table(study)
    cv_section = ["## Cross-validation (mean ± sd over folds)", "", cv_table.to_markdown(index=False), ""] \
        if len(cv_table) else []
    held = "Test split" if study.held_out == "test" else "own validation split (no Test split in this dataset)"
    md = [f"# Study report: {study.name}", "",
          f"{len(study.runs)} finished runs; experiments {', '.join(study.experiments)}; held-out data: {held}.",
          "Values are mean ± sd over seeds; the CI is a bootstrap over held-out images of the seed-mean.", "",
          "## Results", "", table.to_markdown(index=False), "", *cv_section, "## Conclusions", "",
          *[f"- {line}" for line in lines], "", "## Learning curves (mean over seeds)", "",
          "![learning curves](learning_curves.png)", "", "## Confusion matrices (summed over seeds)", "",
          "![confusion matrices](confusion_matrices.png)", "", "## Per-class recall", "",
          "![per-class recall](per_class_recall.png)", "", "## Data audit", "", "```", audit_text, "```", "",
          "## Runs", "", pd.DataFrame([{"experiment": r.experiment, "seed": r.seed, "run_id": r.run_id}
                                       for r in study.runs]).to_markdown(index=False), ""]
    _atomic_write(out_dir / "report.md", "\n".join(md).encode())
    body = [f"<h1>Study report: {html.escape(study.name)}</h1>",
            f"<p>{len(study.runs)} finished runs; held-out data: {html.escape(held)}. Mean ± sd over seeds; "
            "bootstrap CI over held-out images.</p>", "<h2>Results</h2>", table.to_html(index=False, border=0),
            *([f"<h2>Cross-validation</h2>{cv_table.to_html(index=False, border=0)}"] if len(cv_table) else []),
            "<h2>Conclusions</h2><ul>", *[f"<li>{_md_bold(html.escape(line))}</li>" for line in lines], "</ul>"]
    for title, name in (("Learning curves", "learning_curves.png"), ("Confusion matrices", "confusion_matrices.png"),
                        ("Per-class recall", "per_class_recall.png")):
        encoded = base64.b64encode(images[name]).decode()
        body.append(f"<h2>{title}</h2><img alt='{title}' src='data:image/png;base64,{encoded}' style='max-width:100%'>")
    body.append(f"<h2>Data audit</h2><pre>{html.escape(audit_text)}</pre>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(study.name) +
            "</title><style>body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse}"
            "td,th{padding:4px 8px;border-bottom:1px solid #ddd;text-align:left}</style></head><body>" +
            "\n".join(body) + "</body></html>")
    _atomic_write(out_dir / "report.html", page.encode())
    return out_dir / "report.md"


def _md_bold(text: str) -> str:
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)


def main(argv: list[str] | None = None) -> int:
    from melanoma_lab.tracking import tracking_uri

    parser = argparse.ArgumentParser(description="Build a study report from MLflow (no retraining).")
    parser.add_argument("--study", required=True, help="study name = MLflow experiment name")
    parser.add_argument("--tracking-uri", default=None, help="default: MLFLOW_TRACKING_URI or ./mlruns")
    parser.add_argument("--out", type=Path, default=None, help="default: experiments/reports/<study>")
    parser.add_argument("--bootstrap-samples", type=int, default=1000)
    parser.add_argument("--confidence", type=float, default=0.95)
    args = parser.parse_args(argv)
    client = MlflowClient(tracking_uri(args.tracking_uri, "mlruns"))
    try:
        study = load_study(client, args.study)
    except LookupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    path = write_report(study, args.out or Path("experiments/reports") / args.study, args.bootstrap_samples,
                        args.confidence)
    print(f"report written to {path} and {path.with_suffix('.html')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
