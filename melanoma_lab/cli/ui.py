"""The MLflow UI over the store that ``conf/`` names, as training resolved it (``make ui``).

    melanoma-lab ui [--port 5000] [key=value ...]

``paths.root_dir=DIR`` or ``tracking.tracking_uri=URI`` mean the same store as for ``python -m melanoma_lab``
(:mod:`melanoma_lab.config.arguments`); ``MLFLOW_TRACKING_URI`` comes first, as for every command. A tracking server
(an http URI) already serves its own UI: open it in a browser.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


from melanoma_lab.errors import UserError
from melanoma_lab.tracking.server import LOOPBACK, PORT
from melanoma_lab.tracking.store import configured_tracking_uri


def ui_command(uri: str, port: int) -> list[str]:
    """``mlflow ui`` over the configured local store ``uri``, on loopback."""
    if uri.startswith(("http://", "https://")):
        raise UserError(f"the configured store is the tracking server {uri}: it serves its own UI, open {uri} in a "
                        "browser (unset MLFLOW_TRACKING_URI / tracking.tracking_uri for the local store)")
    mlflow = Path(sys.executable).with_name("mlflow")
    return [str(mlflow), "ui", "--backend-store-uri", uri, "--host", LOOPBACK, "--port", str(port)]


def main(argv: list[str] | None = None) -> int:
    from melanoma_lab.config.arguments import parse_with_config

    parser = argparse.ArgumentParser(description="MLflow UI over the configured local store (Ctrl-C stops it).")
    parser.add_argument("--port", type=int, default=PORT, help=f"port on {LOOPBACK}")
    args, cfg = parse_with_config(parser, argv)
    try:
        command = ui_command(configured_tracking_uri(cfg.tracking, cfg.paths.mlruns_dir), args.port)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"MLflow UI of {command[3]} at http://{LOOPBACK}:{args.port} (Ctrl-C stops it)", flush=True)
    try:
        return subprocess.run(command).returncode
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
