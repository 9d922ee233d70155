"""The study report, built only from what MLflow holds (no retraining).

    python -m melanoma_lab.report --study NAME [--tracking-uri URI] [--out DIR]

Writes ``report.md`` (figures as PNG files beside it) and ``report.html`` (figures embedded) with: the
hardware and runtime of the runs, a results table (validation vs held-out test, accuracy vs balanced
accuracy, melanoma sensitivity / specificity / AUC, train-validation gap) as mean ± sd over seeds with
two-level bootstrap confidence intervals, full vs clean Test, paired comparisons between consecutive
experiments, overlaid learning curves, confusion matrices side by side, per-class recall, the data audit,
conclusions computed from those numbers, and the runs used and left out. It uses only the runs
``python -m melanoma_lab.study`` launched (see :mod:`melanoma_lab.reporting.runs`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from melanoma_lab.reporting.render import write_report
from melanoma_lab.reporting.runs import load_study


def main(argv: list[str] | None = None) -> int:
    from melanoma_lab.tracking.store import tracking_uri

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
