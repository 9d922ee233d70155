"""The study report, built only from what MLflow holds (no retraining).

    melanoma-lab report [--study NAME] [--out DIR] [key=value ...]

Writes ``report.md`` (figures as PNG files beside it) and ``report.html`` (figures embedded) with: the
hardware and runtime of the runs, a results table (validation vs held-out test, accuracy vs balanced
accuracy, melanoma sensitivity / specificity / AUC, train-validation gap) as mean ± sd over seeds with
two-level bootstrap confidence intervals, full vs clean Test, paired comparisons between consecutive
experiments, overlaid learning curves, confusion matrices side by side, per-class recall, the data audit,
conclusions computed from those numbers, and the runs used and left out. It uses only the runs
``melanoma-lab study`` launched (see :mod:`melanoma_lab.reporting.selection`). Like the study, it reads the
store, and writes where, ``conf/`` says: ``key=value`` overrides (``paths.root_dir=DIR``, ``tracking.tracking_uri=
URI``, ``study.bootstrap_samples=N``: :mod:`melanoma_lab.config.arguments`); the study defaults to ``study.name`` and
the folder to ``study.reports_dir/<study>``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from melanoma_lab.reporting.render import write_report
from melanoma_lab.reporting.selection import load_study


def main(argv: list[str] | None = None) -> int:
    from melanoma_lab.config.arguments import parse_with_config
    from melanoma_lab.tracking.store import configured_tracking_uri

    parser = argparse.ArgumentParser(description="Build a study report from MLflow (no retraining).")
    parser.add_argument("--study", default=None, help="study name = MLflow experiment name (default: study.name)")
    parser.add_argument("--out", type=Path, default=None, help="default: study.reports_dir/<study>")
    args, cfg = parse_with_config(parser, argv)
    name = args.study or cfg.study.name
    client = MlflowClient(configured_tracking_uri(cfg.tracking, cfg.paths.mlruns_dir))
    try:
        study = load_study(client, name)
        study.frequent_class_images = cfg.evaluation.frequent_class_images
    except LookupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    path = write_report(study, args.out or Path(cfg.study.reports_dir) / name, cfg.study.bootstrap_samples,
                        cfg.study.confidence)
    print(f"report written to {path} and {path.with_suffix('.html')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
