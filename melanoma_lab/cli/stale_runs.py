"""`melanoma-lab stale-runs`: list the runs left RUNNING by a process that no longer exists (`--repair`: mark them
FAILED)."""

from __future__ import annotations

import argparse
import socket

from mlflow.tracking import MlflowClient

from melanoma_lab.tracking import stale_runs as room
from melanoma_lab.tracking.stale_runs import all_pages, describe, fail_stale_runs, find_stale_runs
from melanoma_lab.tracking.store import configured_tracking_uri


def main(argv: list[str] | None = None) -> int:
    from melanoma_lab.config.arguments import parse_with_config  # composes conf/: only the command line needs it

    parser = argparse.ArgumentParser(description=room.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repair", action="store_true", help="mark the stale runs FAILED (default: only list)")
    args, cfg = parse_with_config(parser, argv)
    client = MlflowClient(configured_tracking_uri(cfg.tracking, cfg.paths.mlruns_dir))
    stale = fail_stale_runs(client) if args.repair else find_stale_runs(client)
    names = {e.experiment_id: e.name for e in all_pages(client.search_experiments)}
    for run in stale:
        print(describe(run, names))
    verb = "marked FAILED" if args.repair else "left RUNNING by a process that is gone (--repair marks them FAILED)"
    print(f"{len(stale)} run(s) of host {socket.gethostname()} {verb}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
