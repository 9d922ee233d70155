"""A distributed KerasTuner search on this machine: one chief (the oracle) and N workers, on 127.0.0.1 only.

    melanoma-lab tune-distributed --workers 2 experiment=m2 tuner=random tuner.max_trials=6

Every process runs ``python -m melanoma_lab <overrides>`` with KerasTuner's ``KERASTUNER_TUNER_ID``
(``chief``, ``tuner0``, ...), ``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT``: workers run trials
(nested MLflow runs under the chief's search run), the chief retrains the best values and exports them. On
several machines, start the same command with those variables set by hand (the chief's address as IP).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def wait_for_oracle(chief: subprocess.Popen, port: int, timeout: float) -> None:
    """Return once the chief's oracle accepts connections; raise if the chief exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if chief.poll() is not None:
            raise RuntimeError(f"the chief exited with status {chief.returncode} before serving the oracle")
        try:
            socket.create_connection((LOOPBACK, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"the chief's oracle did not listen on {LOOPBACK}:{port} within {timeout:.0f}s")


def launch(overrides: list[str], workers: int, timeout: float) -> int:
    """Run the chief and ``workers`` workers to the end of the search; returns the worst exit status."""
    port = free_port()
    shared = os.environ | {"KERASTUNER_ORACLE_IP": LOOPBACK, "KERASTUNER_ORACLE_PORT": str(port)}

    def start(tuner_id: str) -> subprocess.Popen:
        run_dir = f"hydra.run.dir=${{paths.experiments_dir}}/runs/${{name}}/${{now:%Y-%m-%d_%H-%M-%S}}_{tuner_id}"
        return subprocess.Popen([sys.executable, "-m", "melanoma_lab", *overrides, run_dir],
                                env=shared | {"KERASTUNER_TUNER_ID": tuner_id})

    processes = [start("chief")]
    try:
        wait_for_oracle(processes[0], port, timeout)
        processes += [start(f"tuner{index}") for index in range(workers)]
        deadline = time.monotonic() + timeout
        return max(process.wait(timeout=max(1.0, deadline - time.monotonic())) for process in processes)
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=30)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="worker processes besides the chief (default 2)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds before everything is stopped")
    parser.add_argument("overrides", nargs="+", help="Hydra overrides, e.g. experiment=m2 tuner=random")
    args = parser.parse_args(argv)
    sys.exit(launch(args.overrides, args.workers, args.timeout))


if __name__ == "__main__":
    main()
