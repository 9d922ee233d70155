"""`melanoma-lab server`: the lab's shared MLflow tracking server on this machine, PostgreSQL-backed."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

from melanoma_lab.errors import UserError
from melanoma_lab.tracking import server as room
from melanoma_lab.tracking.server import LOOPBACK, PORT, tracking_server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=room.__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=None,
                        help="PostgreSQL data and artifacts (default: paths.mlruns_dir/server)")
    parser.add_argument("--port", type=int, default=PORT, help="MLflow server port on 127.0.0.1")
    parser.add_argument("--db-port", type=int, default=5433, help="PostgreSQL port on 127.0.0.1")
    parser.add_argument("--workers", type=int, default=2, help="MLflow server worker processes")
    from melanoma_lab.config.arguments import parse_with_config

    args, cfg = parse_with_config(parser, argv)
    if args.tracking_uri:
        parser.error("--tracking-uri names a store to write to; this command starts one (its URI is printed)")
    args.dir = args.dir or Path(cfg.paths.mlruns_dir) / "server"
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        with tracking_server(args.dir, args.port, args.db_port, args.workers) as uri:
            print(f"MLflow tracking server at {uri} (PostgreSQL on {LOOPBACK}:{args.db_port}, data in "
                  f"{args.dir.resolve()}); on each job: export MLFLOW_TRACKING_URI={uri}; Ctrl-C stops it", flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    except (UserError, subprocess.CalledProcessError, RuntimeError, TimeoutError) as error:
        detail = getattr(error, "stderr", "") or ""
        print(f"error: {error} {detail}".strip(), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
