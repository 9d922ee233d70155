"""`melanoma-lab promote --run ID | --study NAME`: register a model as the champion, with its model card."""

from __future__ import annotations

import argparse
import sys

import mlflow
from mlflow.tracking import MlflowClient

from melanoma_lab.config.arguments import parse_with_config
from melanoma_lab.errors import USER_ERROR_STATUS
from melanoma_lab.serving import promote as room
from melanoma_lab.serving.promote import ALIAS, REGISTERED_NAME, best_run, promote
from melanoma_lab.serving.selection import selection_tags
from melanoma_lab.tracking.store import configured_tracking_uri, fluent_tracking_uri


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=room.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="MLflow run id whose model to promote")
    source.add_argument("--study", help="promote the best run of this study (MLflow experiment)")
    parser.add_argument("--metric", default="val_balanced_accuracy", help="what 'best' means with --study")
    args, cfg = parse_with_config(parser, argv)
    uri = configured_tracking_uri(cfg.tracking, cfg.paths.mlruns_dir)
    client = MlflowClient(uri)
    try:
        with fluent_tracking_uri(uri):  # register_model, get_model_info and search_logged_models are fluent
            selection = best_run(client, args.study, args.metric) if args.study else None
            run_id = args.run or selection.run_id
            version = promote(client, run_id, selection)
    except (LookupError, mlflow.exceptions.MlflowException) as error:
        print(f"error: {error}", file=sys.stderr)
        return USER_ERROR_STATUS  # no such run or study, or nothing to promote: the user's to fix
    print(f"registered run {run_id} as {REGISTERED_NAME} version {version} (alias @{ALIAS})")
    if selection is not None:
        tags = selection_tags(selection, client.get_run(run_id).data.metrics)
        print(f"picked by {args.metric} = {selection.value:.4f}: {tags['selection_score_is']}; on data that did "
              f"not pick it: {tags['independent_scores']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
