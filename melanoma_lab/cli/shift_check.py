"""`melanoma-lab shift-check --run ID`: score a cross-validation's fold models under acquisition shifts."""

from __future__ import annotations

import argparse
import os
import sys

from mlflow.tracking import MlflowClient

from melanoma_lab.evaluation.shifts import render
from melanoma_lab.study import shift_check as room
from melanoma_lab.study.shift_check import check_logged_cv


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from melanoma_lab.config.arguments import parse_with_config
    from melanoma_lab.errors import USER_ERROR_STATUS
    from melanoma_lab.tracking.store import configured_tracking_uri, fluent_tracking_uri

    parser = argparse.ArgumentParser(description=room.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="the run id of a cross-validation parent")
    args, cfg = parse_with_config(parser, argv)
    store = configured_tracking_uri(cfg.tracking, cfg.paths.mlruns_dir)
    client = MlflowClient(store)
    try:
        with fluent_tracking_uri(store):  # the fold models load through MLflow's fluent API
            table = check_logged_cv(client, args.run, cfg.evaluation, cfg.dataset.melanoma_class)
    except (LookupError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return USER_ERROR_STATUS
    print(render(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
