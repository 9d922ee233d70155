"""The report's numbers: results, full vs clean Test, cross-validation, paired comparisons, conclusions."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from melanoma_lab.evaluation import registry
from melanoma_lab.evaluation.metrics import metric_key
from melanoma_lab.evaluation.scores import binary_auc
from melanoma_lab.reporting.selection import Study, StudyRun
from melanoma_lab.reporting.intervals import held_out, interval_cells
from melanoma_lab.reporting.statistics import (balanced_accuracy_of, clean_part, common_paths, paired_difference,
                                               probabilities)

GAP = registry.gap_key("accuracy")  # clean train pass minus validation, same weights and views (evaluation.fit_gap)
OPERATING_POINT = {"val melanoma spec @ sens 0.9": "val_melanoma_specificity_at_sens_0.9"}  # a per-run family
PARENT_PREFIXES = ("oof_", "ensemble_")  # a CV parent's own numbers (out of fold, its fold ensemble's), not fold means


def cv_columns() -> dict[str, str]:
    """The cross-validation table's mean ± sd columns (label: key), from the metric registry."""
    return {label: key for key, label in registry.labelled(registry.CROSSVAL, short=True)
            if not key.startswith(PARENT_PREFIXES)} | OPERATING_POINT


def oof_columns_of_parent() -> dict[str, str]:
    """The cross-validation table's columns of the parent's own numbers (label: key): out of fold, and its fold
    ensemble's on the calibration slice and on Test (with their intervals), from the metric registry."""
    return {label: key for key, label in registry.labelled(registry.CROSSVAL, short=True)
            if key.startswith(PARENT_PREFIXES)}


def ensemble_threshold(row: dict) -> str:
    """The fold ensemble's alert threshold and what chose it (n/a: no ensemble, or no threshold)."""
    threshold, images = row.get("ensemble_melanoma_alert_threshold"), row.get("ensemble_calibration_images")
    if threshold is None or pd.isna(threshold):
        return "n/a"
    where = f"its own, {images:.0f} calibration images" if images and not pd.isna(images) else "members' OOF"
    return f"{threshold:.3f} ({where})"


def nan_mean(values: list[float | None]) -> float:
    """Mean of the finite values (a class absent from a split has NaN recall: skipped); NaN when none."""
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def mean_sd(values: list[float | None], form: str = ".3f") -> str:
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return "n/a"
    return f"{np.mean(values):{form}} ± {np.std(values, ddof=1) if len(values) > 1 else 0.0:{form}}"


def metric_of(run: StudyRun, key: str) -> float | None:
    """A run's metric; for a cross-validation parent the mean over its folds (``cv_mean_<key>``)."""
    return run.metrics.get(key, run.metrics.get(f"cv_mean_{key}"))


def spread(values: list[float | None]) -> str:
    """Largest minus smallest value over seeds (n/a with fewer than two)."""
    values = [v for v in values if v is not None and np.isfinite(v)]
    return f"{max(values) - min(values):.3f}" if len(values) > 1 else "n/a"


def _median_epoch_seconds(runs: list[StudyRun]) -> str:
    seconds = [t for r in runs for t in r.history.get("epoch_seconds", [])]
    return f"{np.median(seconds):.1f}" if seconds else "n/a"


def _share(metrics: dict[str, float], part: str, whole: str) -> float | None:
    """``metrics[part] / metrics[whole]`` (None when a run predates either metric)."""
    return metrics[part] / metrics[whole] if part in metrics and metrics.get(whole) else None


def _melanomas_found(table: pd.DataFrame, melanoma: int) -> str:
    is_melanoma = table["label"].to_numpy() == melanoma
    flagged = probabilities(table).argmax(axis=1) == melanoma
    return f"{int((is_melanoma & flagged).sum())}/{int(is_melanoma.sum())}"


def results_table(study: Study, samples: int, confidence: float) -> pd.DataFrame:
    rows = []
    for name in study.experiments:
        runs = study.of(name)
        row = {"experiment": name, "seeds": len(runs),
               "val accuracy": mean_sd([metric_of(r, "final_val_accuracy") for r in runs]),
               "val balanced acc": mean_sd([metric_of(r, "val_balanced_accuracy") for r in runs]),
               "train-val gap": mean_sd([metric_of(r, GAP) for r in runs]),
               "s/epoch (median)": _median_epoch_seconds(runs),
               "run s": mean_sd([r.metrics.get("run_seconds") for r in runs], ".0f"),
               "tracking share": mean_sd([_share(r.metrics, "tracking_seconds", "run_seconds") for r in runs])}
        shown = registry.names(registry.REPORT)
        for metric in [m for m in shown if study.held_out != "val" or m not in ("accuracy", "balanced_accuracy")]:
            row[f"{study.held_out} {metric.replace('_', ' ')}"] = mean_sd(
                [r.metrics.get(f"{study.held_out}_{metric}") for r in runs])
        row |= interval_cells(held_out(runs, study.held_out), study, study.held_out, samples, confidence)
        if study.held_out == "oof":
            row |= oof_columns(runs)
        if study.melanoma_index is not None:
            row["melanomas found (per seed)"] = ", ".join(
                _melanomas_found(r.predictions[study.held_out], study.melanoma_index) for r in runs)
        rows.append(row)
    return pd.DataFrame(rows)


def oof_columns(runs: list[StudyRun]) -> dict[str, str]:
    """What a cross-validated study is judged on beyond the headline: balanced accuracy over the classes with
    enough images, the melanoma alert at each fold's inner-validation threshold, and the spread over seeds."""
    classes = {int(r.metrics["oof_frequent_classes"]) for r in runs if "oof_frequent_classes" in r.metrics}
    return {f"oof balanced acc ({'/'.join(map(str, sorted(classes))) or '?'} frequent classes)":
                mean_sd([r.metrics.get("oof_balanced_accuracy_frequent") for r in runs]),
            "oof alert sensitivity": mean_sd([r.metrics.get("oof_melanoma_alert_sensitivity") for r in runs]),
            "oof alert specificity": mean_sd([r.metrics.get("oof_melanoma_alert_specificity") for r in runs]),
            "seed range melanoma AUC": spread([r.metrics.get("oof_melanoma_roc_auc") for r in runs]),
            "seed range balanced acc (frequent)": spread([r.metrics.get("oof_balanced_accuracy_frequent")
                                                          for r in runs]),
            "s per fold (median)": _median([r.metrics.get("cv_mean_run_seconds") for r in runs]),
            "s per CV (median)": _median([r.metrics.get("cv_seconds") for r in runs])}


def _median(values: list[float | None]) -> str:
    values = [v for v in values if v is not None and np.isfinite(v)]
    return f"{np.median(values):.0f}" if values else "n/a"


def _melanoma_auc(table: pd.DataFrame, melanoma: int) -> float:
    return binary_auc(table["label"].to_numpy() == melanoma, probabilities(table)[:, melanoma])


def _part_columns(tables: dict[int, pd.DataFrame] | None, study: Study, label: str, samples: int,
                  confidence: float) -> dict[str, str]:
    if tables is None:
        return {f"{label} images": "n/a", f"{label} balanced acc": "n/a (no train_twin column logged)"}
    images = len(common_paths(list(tables.values())))
    out = {f"{label} images": str(images),
           f"{label} balanced acc": mean_sd([balanced_accuracy_of(t) for t in tables.values()]),
           **(interval_cells(tables, study, label, samples, confidence) if images else {f"{label} CI": "n/a"})}
    if study.melanoma_index is not None:
        out[f"{label} melanoma AUC"] = mean_sd([_melanoma_auc(t, study.melanoma_index) for t in tables.values()])
    return out


def full_and_clean_table(study: Study, samples: int, confidence: float) -> pd.DataFrame:
    """Balanced accuracy and melanoma ROC-AUC, and the interval metrics (:mod:`melanoma_lab.reporting.intervals`), on
    the full held-out set and on its clean part (images without a byte-identical or near copy in Train), computed
    from the logged predictions."""
    rows = []
    for name in study.experiments:
        tables = held_out(study.of(name), study.held_out)
        clean = {seed: clean_part(t) for seed, t in tables.items()}
        clean = None if any(t is None for t in clean.values()) else clean
        rows.append({"experiment": name, **_part_columns(tables, study, "full", samples, confidence),
                     **_part_columns(clean, study, "clean", samples, confidence)})
    return pd.DataFrame(rows)


def cross_validation_table(study: Study) -> pd.DataFrame:
    """Cross-validation parents: mean ± sd over folds of the validation (nested: inner) and scored-fold metrics,
    the metrics of the out-of-fold predictions, and the fold ensemble's threshold, operating point on its calibration
    slice and Test numbers with their intervals (n/a for parents logged before them, or without an ensemble)."""
    rows = []
    for row in study.cross_validation.to_dict("records"):
        out = {"experiment": row["experiment"], "folds": row["folds"], "seed": row["seed"]}
        for label, key in cv_columns().items():
            mean, sd = row.get(f"cv_mean_{key}"), row.get(f"cv_sd_{key}")
            out[label] = "n/a" if mean is None or pd.isna(mean) else f"{mean:.3f} ± {sd:.3f}"
        for label, key in oof_columns_of_parent().items():
            value = row.get(key)
            out[label] = "n/a" if value is None or pd.isna(value) else f"{value:.3f}{registry.interval_text(row, key)}"
        out["ensemble alert threshold (chosen on)"] = ensemble_threshold(row)
        rows.append(out)
    return pd.DataFrame(rows)


def _short(value: str | None, width: int = 40) -> str:
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def changed_params(a: StudyRun, b: StudyRun) -> list[str]:
    """Config values that differ between two runs (ignoring seed and bookkeeping)."""
    ignore = re.compile(r"^(name|trainer\.seed|paths\.|tracking\.|study\.)")
    keys = sorted(set(a.params) | set(b.params))
    return [f"{k}: {_short(a.params.get(k))} → {_short(b.params.get(k))}" for k in keys
            if not ignore.match(k) and a.params.get(k) != b.params.get(k)]


def rarest_classes(study: Study, k: int = 3) -> list[str]:
    counts = (study.audit or {}).get("class_counts", {}).get("train", {})
    return sorted(study.classes, key=lambda c: counts.get(c, 0))[:k]


def class_recall(study: Study, runs: list[StudyRun], classes: list[str]) -> float:
    """Mean held-out recall of ``classes`` over ``runs``, skipping NaN (a class absent from a split)."""
    return nan_mean([r.metrics.get(f"{study.held_out}_recall_{metric_key(c)}") for r in runs for c in classes])


def comparisons(study: Study, samples: int, confidence: float) -> list[dict]:
    """Consecutive experiments compared on the seeds both ran and the held-out images both were scored on."""
    out = []
    names = study.experiments
    rare = rarest_classes(study)
    for first, second in zip(names, names[1:]):
        a, b = study.of(first), study.of(second)
        common = sorted({r.seed for r in a} & {r.seed for r in b})
        if not common:
            continue
        a = [r for r in a if r.seed in common]
        b = [r for r in b if r.seed in common]
        diff = paired_difference({r.seed: r.predictions[study.held_out] for r in a},
                                 {r.seed: r.predictions[study.held_out] for r in b}, samples, confidence,
                                 min_images=study.frequent_class_images)
        out.append({"from": first, "to": second, "changes": changed_params(a[0], b[0]), **diff,
                    "gap_from": nan_mean([metric_of(r, GAP) for r in a]),
                    "gap_to": nan_mean([metric_of(r, GAP) for r in b]),
                    "rare_recall_from": class_recall(study, a, rare), "rare_recall_to": class_recall(study, b, rare)})
    return out


def _images_note(c: dict, split: str) -> str:
    if c["images"] == c["images_a"] == c["images_b"]:
        return f"on the same {c['images']} {split} images"
    return (f"on the {c['images']} {split} images both were scored on (their {split} sets differ: {c['from']} "
            f"has {c['images_a']}, {c['to']} has {c['images_b']})")


def _validation_loss_note(runs) -> str:
    """Where the runs' validation loss was lowest (mean epoch over the runs that logged it), and how many were still
    improving at their last epoch: there the loss had not bottomed out and more epochs may help."""
    logged = [np.asarray(r.history["val_loss"], dtype=float) for r in runs if r.history.get("val_loss")]
    if not logged:
        return "; no validation-loss history logged"
    curves = [curve for curve in logged if np.isfinite(curve).any()]
    broken = sum(not np.isfinite(curve).all() for curve in logged)  # NaN or inf at some epoch: it diverged there
    diverged = (f"; validation loss not finite at some epoch in {broken} of {len(logged)} runs (diverged)"
                if broken else "")
    if not curves:
        return diverged
    lowest = [int(np.nanargmin(np.where(np.isfinite(c), c, np.nan))) + 1 for c in curves]  # a NaN epoch is no low
    note = (f"; validation loss lowest at epoch {np.mean(lowest):.1f} of {np.mean([len(c) for c in curves]):.0f} "
            f"(mean over {len(curves)} run{'s' if len(curves) > 1 else ''})")
    still_falling = sum(at == len(curve) > 1 for at, curve in zip(lowest, curves))  # one epoch: nothing to say
    if still_falling:
        note += f", still falling at the last epoch in {still_falling} of {len(curves)}: more epochs may help"
    return note + diverged


def conclusions(study: Study, compared: list[dict]) -> list[str]:
    lines = []
    for name in study.experiments:
        runs = study.of(name)
        gap = nan_mean([metric_of(r, GAP) for r in runs])
        where = _validation_loss_note(runs)
        if not np.isfinite(gap):
            lines.append(f"**{name}**: no train-validation gap logged for its runs{where}.")
            continue
        verdict = "overfits" if gap > 0.10 else "does not overfit much"
        lines.append(f"**{name}** {verdict}: train-validation accuracy gap {gap:.3f} (one clean pass of the "
                     f"evaluated weights and views over the original training images, minus validation){where}.")
    rare = ", ".join(rarest_classes(study))
    for c in compared:
        better = "better than" if c["low"] > 0 else ("worse than" if c["high"] < 0 else "not distinguishable from")
        lines.append(
            f"**{c['to']} vs {c['from']}** ({'; '.join(c['changes']) or 'same config'}): {study.held_out} balanced "
            f"accuracy (classes with >= {study.frequent_class_images} images) {c['delta']:+.3f} "
            f"[{c['low']:+.3f}, {c['high']:+.3f}] over seeds {c['seeds']}, "
            f"{_images_note(c, study.held_out)} (bootstrap over {c['resampled']}) — {c['to']} is {better} {c['from']}"
            f" (not better in {c['share_not_better']:.1%} of the bootstrap replicates; not a p-value); "
            f"train-validation gap {c['gap_from']:.3f} → "
            f"{c['gap_to']:.3f} ({'reduced' if c['gap_to'] < c['gap_from'] else 'not reduced'}); recall of the "
            f"rarest classes ({rare}) {c['rare_recall_from']:.3f} → {c['rare_recall_to']:.3f} "
            f"({'lifted' if c['rare_recall_to'] > c['rare_recall_from'] else 'not lifted'}).")
    if study.held_out == "oof":
        lines.append("Cross-validated study: every number above is on out-of-fold predictions (every Train image "
                     "once, predicted by the fold model that never saw it); each fold chose its best epoch and alert "
                     "threshold on an inner validation split. Independent images may still score lower.")
    if study.held_out == "val":
        lines.append("This dataset has no Test split: every number above is on each seed's own validation split, "
                     "which also chose the best epoch. Expect held-out test numbers to be lower.")
    return lines
