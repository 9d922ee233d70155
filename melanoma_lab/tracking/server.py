"""A lab's shared MLflow tracking server on this machine: a private PostgreSQL cluster as the backend store and
``mlflow server --serve-artifacts`` in front of it, both on 127.0.0.1 only.

    make server                                         # = melanoma-lab server
    melanoma-lab server --port 5000 --db-port 5433 [--dir DIR] [paths.root_dir=ROOT ...]

``<dir>`` is ``paths.mlruns_dir/server`` of ``conf/`` and its ``key=value`` overrides (as for every command), unless
``--dir`` names it.

The first start creates the PostgreSQL cluster (``initdb`` under ``<dir>/postgres``, as the ``postgres`` user
when run as root), a role and a database ``mlflow`` (its password in ``<dir>/postgres/mlflow.password``, mode
600, handed to MLflow in ``PGPASSWORD``, never on a command line). Artifacts are stored under
``<dir>/artifacts`` and proxied by the server (``mlflow-artifacts:/``), so a job on another node needs only
``MLFLOW_TRACKING_URI=http://<host>:<port>``. Ctrl-C or SIGTERM stops MLflow's whole process group, then
PostgreSQL. Needs Debian's ``postgresql`` (``apt-get install postgresql``).
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from melanoma_lab.errors import UserError

LOOPBACK = "127.0.0.1"
PORT = 5000  # the MLflow UI's and the shared server's default port (make ui / make server: PORT)
DATABASE = "mlflow"  # also the role's name


def postgres_bin() -> Path | None:
    """Folder of Debian's PostgreSQL server programs (the newest installed), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresStore:
    """A PostgreSQL cluster in ``folder`` listening on 127.0.0.1:``port`` (and a socket inside ``folder``)."""

    def __init__(self, folder: Path, port: int):
        self.bin = postgres_bin()
        if self.bin is None:
            raise UserError("PostgreSQL is not installed: apt-get install postgresql (or use the local SQLite "
                            "store: unset MLFLOW_TRACKING_URI)")
        self.folder, self.port = Path(folder).resolve(), port
        self.password_file = self.folder / "mlflow.password"

    def _as_owner(self, *command: str) -> list[str]:
        """PostgreSQL refuses to run as root: root runs it as the ``postgres`` user."""
        return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run ``statement`` as the superuser (over the cluster's private socket); its unaligned output."""
        return subprocess.run(self._as_owner(str(self.bin / "psql"), "-h", str(self.folder), "-p", str(self.port),
                                             "-U", "postgres", "-d", database, "-tAc", statement),
                              check=True, capture_output=True, text=True).stdout.strip()

    def start(self) -> None:
        """Create the cluster, role and database if missing, and start the server (returns once it accepts)."""
        if not (self.folder / "PG_VERSION").is_file():
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            if os.geteuid() == 0:
                shutil.chown(self.folder, "postgres", "postgres")
                if subprocess.run(self._as_owner("test", "-w", str(self.folder))).returncode != 0:
                    raise UserError(f"the postgres user cannot reach {self.folder}: give its parent folders "
                                    "o+x or choose another --dir")
            subprocess.run(self._as_owner(str(self.bin / "initdb"), "-D", str(self.folder), "-U", "postgres",
                                          "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8"),
                           check=True, capture_output=True, text=True)
        options = f"-h {LOOPBACK} -p {self.port} -k {self.folder}"
        subprocess.run(self._as_owner(str(self.bin / "pg_ctl"), "-D", str(self.folder), "-l",
                                      str(self.folder / "server.log"), "-o", options, "-w", "start"),
                       check=True, capture_output=True, text=True)
        if not self.password_file.is_file():
            password = secrets.token_urlsafe(24)
            if self.sql(f"SELECT 1 FROM pg_roles WHERE rolname = '{DATABASE}'") != "1":
                self.sql(f"CREATE ROLE {DATABASE} LOGIN PASSWORD '{password}'")
            else:
                self.sql(f"ALTER ROLE {DATABASE} PASSWORD '{password}'")
            if self.sql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'") != "1":
                self.sql(f"CREATE DATABASE {DATABASE} OWNER {DATABASE}")
            self.password_file.touch(mode=0o600)
            self.password_file.write_text(password)

    @property
    def uri(self) -> str:
        """The backend store URI (no password: see :attr:`password`, passed as ``PGPASSWORD``)."""
        return f"postgresql+psycopg2://{DATABASE}@{LOOPBACK}:{self.port}/{DATABASE}"

    @property
    def password(self) -> str:
        return self.password_file.read_text().strip()

    def stop(self) -> None:
        if (self.folder / "postmaster.pid").is_file():
            subprocess.run(self._as_owner(str(self.bin / "pg_ctl"), "-D", str(self.folder), "-m", "fast", "-w",
                                          "stop"), capture_output=True, text=True)


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 180.0) -> None:
    """Return once ``url`` answers 200; raise if ``process`` exits first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def stop_group(process: subprocess.Popen, timeout: float = 30.0) -> None:
    """Stop ``process`` and its whole process group (mlflow server starts ~15 processes), then reap it."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        process.communicate(timeout=timeout)  # drains its pipes, if any, so a chatty server cannot block on them
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()


def start_mlflow_server(store: PostgresStore, artifacts: Path, port: int, workers: int = 1,
                        log_file: Path | None = None) -> subprocess.Popen:
    """``mlflow server`` on 127.0.0.1:``port`` over ``store``, artifacts proxied from ``artifacts``, in its own
    process group (stop it with :func:`stop_group`); returns once it answers ``/health``."""
    mlflow = Path(sys.executable).with_name("mlflow")
    output = log_file.open("ab") if log_file else subprocess.DEVNULL
    process = subprocess.Popen([str(mlflow), "server", "--backend-store-uri", store.uri, "--serve-artifacts",
                                "--artifacts-destination", Path(artifacts).resolve().as_uri(), "--host", LOOPBACK,
                                "--port", str(port), "--workers", str(workers)],
                               stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
                               env=os.environ | {"PGPASSWORD": store.password,
                                                 "PATH": f"{mlflow.parent}{os.pathsep}{os.environ['PATH']}"})
    try:
        wait_until_up(f"http://{LOOPBACK}:{port}/health", process)
    except BaseException:
        stop_group(process)
        raise
    return process


@contextmanager
def tracking_server(folder: Path, port: int, db_port: int, workers: int = 1) -> Iterator[str]:
    """PostgreSQL + ``mlflow server`` for the duration of the block; yields the tracking URI. Both are stopped
    afterwards, whatever happens."""
    folder = Path(folder)
    store = PostgresStore(folder / "postgres", db_port)
    try:
        store.start()
        server = start_mlflow_server(store, folder / "artifacts", port, workers, folder / "mlflow-server.log")
        try:
            yield f"http://{LOOPBACK}:{port}"
        finally:
            stop_group(server)
    finally:
        store.stop()
