"""A local Ray cluster for tests: ``ray start --head --block`` on 127.0.0.1 in its own process group.

Its workers inherit this environment (``MLFLOW_TRACKING_URI``, ``PYTHONPATH``), as a lab's Ray nodes are set up
with the tracking server's address.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from melanoma_lab.tracking.server import stop_group
from melanoma_lab.study.tune_cluster import free_port


def ray_command() -> str | None:
    found = Path(sys.executable).with_name("ray")
    return str(found) if found.exists() else shutil.which("ray")


@contextmanager
def ray_head(folder: Path, env: dict[str, str], cpus: int = 2) -> Iterator[str]:
    """Start the head node (no dashboard) with ``env``; yields its address ``127.0.0.1:<port>``."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    head = subprocess.Popen([ray_command(), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
                             f"--port={port}", "--include-dashboard=false", f"--num-cpus={cpus}",
                             f"--temp-dir={folder}", "--disable-usage-stats"],
                            stdout=(folder / "ray-head.log").open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True, env=env)
    try:
        address, deadline = f"127.0.0.1:{port}", time.monotonic() + 120
        while subprocess.run([ray_command(), "status", f"--address={address}"], capture_output=True,
                             env=env).returncode != 0:
            if head.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start failed: {(folder / 'ray-head.log').read_text()[-3000:]}")
            time.sleep(1)
        yield address
    finally:
        stop_group(head, timeout=60)
