"""Ablation tables of cross-validated runs, built only from what MLflow holds (no retraining).

    melanoma-lab ablation [--experiment NAME] [--baseline KEY=VALUE ...] [--pool-folds] [--out DIR] [key=value ...]

Cross-validate an experiment once as it is and once per ingredient changed, on the same folds, e.g.::

    python -m melanoma_lab experiment=m5 study.cv_folds=5 study.cv_run_folds=[1,2] dataset.root=...
    python -m melanoma_lab experiment=m5 study.cv_folds=5 study.cv_run_folds=[1,2] dataset.root=... \
        optimizer.use_ema=false

then this writes ``ablation.md`` and ``ablation.csv`` (one table per group of runs on identical folds: see
:mod:`melanoma_lab.reporting.ablation`) into ``study.reports_dir/<study>``. The store and folders come from
``conf/`` and its ``key=value`` overrides, as for every command (:mod:`melanoma_lab.config.arguments`).
``--baseline dataset.colour_constancy_power=null`` (repeatable) makes the run with those overrides the reference,
e.g. once a recipe decision was taken on earlier rows and the next ingredient is ablated from the new recipe.
``--record-decision TEXT`` (e.g. ``"m5: colour constancy off"``) tags every run compared in the tables (not a run
alone on its folds, nor a reference beyond the folds its arms ran) with ``informed_decision=TEXT``: a recipe was
chosen on their out-of-fold images, and the study report then gives the final recipe's out-of-fold scores without
those images too
(:mod:`melanoma_lab.reporting.decisions`).
``--experiment m5 --experiment m6`` compares two recipes on identical folds (same seed, folds and data), m5 the
reference. Parents that ran the shift check show the worst drop per shift family beside the out-of-fold scores.
An arm may run fewer folds than the reference (``study.cv_run_folds=[1]`` beside a reference on all five): it is
compared on its own folds' images. ``--pool-folds``: a recipe cross-validated in pieces (``study.cv_run_folds=[1]``,
``[2]``, ``[3,4,5]``, e.g. over several sittings) stands as one parent of all five folds, to meet a recipe that ran
them at once
(:mod:`melanoma_lab.reporting.pooling`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd

from melanoma_lab.evaluation import registry
from melanoma_lab.reporting.ablation import GROUP_TAGS, NOT_A_CHANGE, ablation_table, decided_on, load_groups
from melanoma_lab.reporting.ablation_notes import multiplicity, noise_floor, resampling
from melanoma_lab.reporting.decisions import DECISION_TAG, record_decision
from melanoma_lab.reporting.pooling import SEPARATOR, parent_ids, short_id

SHIFT = "shift_worst_drop_"


def _difference(row: pd.Series, name: str) -> str:
    if pd.isna(row.get(f"delta_{name}")):
        return ""
    return f"{row[f'delta_{name}']:+.3f} [{row[f'delta_{name}_low']:+.3f}, {row[f'delta_{name}_high']:+.3f}]"


def _shift_families(table: pd.DataFrame) -> list[str]:
    """The shift families whose worst drops some run of ``table`` logged (melanoma_lab.study.shift_check)."""
    suffixes = [f"_{name}" for name in registry.names(registry.SHIFT_GATE)]
    return sorted({c.removeprefix(SHIFT).removesuffix(suffix) for c in table.columns for suffix in suffixes
                   if c.startswith(SHIFT) and c.endswith(suffix)})


def _shift_cell(row: pd.Series, family: str) -> str:
    drops = [row.get(f"{SHIFT}{family}_{name}") for name in registry.names(registry.SHIFT_GATE)]
    if all(drop is None or pd.isna(drop) for drop in drops):
        return ""
    return " / ".join("n/a" if drop is None or pd.isna(drop) else f"{drop:+.3f}" for drop in drops)


def render(key: tuple, table: pd.DataFrame, confidence: float, floor: str) -> str:
    """A markdown section: which runs, then one line per run with its differences from the baseline and, where
    the runs had the shift check, the worst drop of each gated metric of the registry per shift family; after it
    the noise floor (``floor``: :func:`noise_floor`) and the multiplicity note."""
    what = ", ".join(f"{tag} {value}" for tag, value in zip(GROUP_TAGS, key) if value)
    drawn = resampling(table)
    ci = f"{confidence:.0%} bootstrap CI" + (f" resampling {drawn}" if drawn else "")
    families = _shift_families(table)
    gated = [registry.METRICS[name].label for name in registry.names(registry.SHIFT_GATE)]
    lines = [f"## {key[0]}: {what}", "",
             f"{int(table['images'].iloc[0])} out-of-fold images; differences from the baseline, paired by image "
             f"({ci}); alert at each fold's inner-validation threshold."
             + (f" Shift check: the worst drop of {' / '.join(gated)} over each family's shifts "
                "(positive: worse)." if families else "")
             + (" A run joined by + is one recipe's parents on disjoint folds, pooled (--pool-folds): its alert is "
                "recomputed over all their images, its shift drops are the worst of its parents' own (each on its "
                "own images)."
                if table["run_id"].str.contains(SEPARATOR, regex=False).any() else "")
             + (" A run marked (folds ...) ran other folds than the baseline: its scores and differences are over the"
                " images it shares with the baseline (where it ran more, its alert is recomputed on them and its shift "
                "drops are left out)."
                if "same_folds" in table and not table["same_folds"].astype(bool).all() else ""), "",
             f"| change | bal. acc. ({int(table['frequent_classes'].iloc[0])} frequent classes) | difference | "
             "melanoma AUC | difference | alert sens. | alert spec. | "
             + "".join(f"{family} shift drop | " for family in families) + "s / fold | run |",
             "|---|---|---|---|---|---|---|" + "---|" * len(families) + "---|---|"]
    for _, row in table.iterrows():
        lines.append(f"| {row['change']} | {row['balanced_accuracy_frequent']:.3f} | "
                     f"{_difference(row, 'balanced_accuracy_frequent')} | {row['melanoma_roc_auc']:.3f} | "
                     f"{_difference(row, 'melanoma_roc_auc')} | {row['alert_sensitivity']:.3f} | "
                     f"{row['alert_specificity']:.3f} | " + "".join(f"{_shift_cell(row, f)} | " for f in families)
                     + f"{row['fold_seconds']:.0f} | {short_id(row['run_id'])} |")
    notes = [note for note in (floor, multiplicity(table, confidence)) if note]
    return "\n".join(lines + [line for note in notes for line in ("", note)]) + "\n"


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow.tracking import MlflowClient

    from melanoma_lab.config.arguments import parse_with_config
    from melanoma_lab.data.staging import write_atomically
    from melanoma_lab.tracking.store import configured_tracking_uri

    parser = argparse.ArgumentParser(description="Ablation tables of cross-validated runs (no retraining).")
    parser.add_argument("--study", default=None, help="study name = MLflow experiment name (default: study.name)")
    parser.add_argument("--experiment", action="append", default=[],
                        help="only this experiment's runs (e.g. m5); repeated (--experiment m5 --experiment m6): "
                             "compares the experiments on identical folds, the first as the reference")
    parser.add_argument("--baseline", action="append", default=[], metavar="KEY=VALUE",
                        help="the reference run overrides this beyond the common overrides (repeatable)")
    parser.add_argument("--pool-folds", action="store_true",
                        help="one recipe's parents on disjoint folds of one split (cv_run_folds=[1], [2], [3,4,5]) "
                             "stand as one parent of all their folds")
    parser.add_argument("--out", type=Path, default=None, help="default: study.reports_dir/<study>")
    parser.add_argument("--record-decision", default=None, metavar="TEXT",
                        help="a recipe decision is taken on these tables: tag their runs informed_decision=TEXT (the "
                             "study report then also scores the final recipe without their out-of-fold images)")
    args, cfg = parse_with_config(parser, argv)
    study = args.study or cfg.study.name
    args.baseline = [item.lstrip("+~") for item in args.baseline]  # as the runs' override tags spell the keys
    keys = [item.split("=", 1)[0] for item in args.baseline]
    malformed = [item for item, key in zip(args.baseline, keys) if "=" not in item or not key]
    if malformed:
        parser.error(f"--baseline takes KEY=VALUE as the runs' overrides spell it, e.g. "
                     f"dataset.colour_constancy_power=null; got {', '.join(malformed)}")
    if len(set(keys)) < len(keys) or any(key.startswith(NOT_A_CHANGE) for key in keys):
        parser.error(f"--baseline names each key once, and not {', '.join(NOT_A_CHANGE)} keys (where runs go, "
                     f"not what they compute); got {' '.join(args.baseline)}")
    if args.record_decision is not None and not args.record_decision.strip():
        parser.error("--record-decision takes what was decided, e.g. 'm5: colour constancy off'")
    try:
        client = MlflowClient(configured_tracking_uri(cfg.tracking, cfg.paths.mlruns_dir))
        groups = load_groups(client, study, tuple(args.experiment), tuple(args.baseline), pool=args.pool_folds)
        tables = {key: ablation_table(arms, cfg.evaluation.frequent_class_images, cfg.study.bootstrap_samples,
                                      cfg.study.confidence) for key, arms in groups.items()}
    except LookupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    out = args.out or Path(cfg.study.reports_dir) / study
    out.mkdir(parents=True, exist_ok=True)
    text = f"# Ablations of {study}\n\n" + "\n".join(render(k, t, cfg.study.confidence, noise_floor(k, tables))
                                                     for k, t in tables.items())
    write_atomically(out / "ablation.md", text)
    rows = pd.concat([t.assign(**dict(zip(GROUP_TAGS, k))) for k, t in tables.items()], ignore_index=True)
    write_atomically(out / "ablation.csv", rows.to_csv(index=False))
    print(text)
    print(f"written to {out / 'ablation.md'} and {out / 'ablation.csv'}")
    if args.record_decision:
        runs = [run for arms in groups.values() for arm_id in decided_on(arms)  # compared, not alone
                for run in parent_ids(arm_id)]
        changed = record_decision(client, runs, args.record_decision)
        print(f"tagged {len(changed)} of {len(runs)} runs {DECISION_TAG}={args.record_decision!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
