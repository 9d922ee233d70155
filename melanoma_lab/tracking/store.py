"""Where runs are stored: the store URI (SQLite under mlruns/, or a server), its reachability, the lock around
creating a SQLite store, retries while SQLite is locked, and MLflow's fluent API pointed at one store for a while.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from melanoma_lab.errors import UserError


class TrackingUnavailableError(UserError, RuntimeError):
    """The tracking store cannot record a run; nothing is trained until it can."""


WAYS_OUT = ("start the tracking server, unset MLFLOW_TRACKING_URI to use the local store under mlruns/, "
            "or run with tracking.enabled=false")


def tracking_uri(configured: str | None, mlruns_dir: str | Path) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the configured URI, else a SQLite store in ``mlruns_dir``."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    if configured:
        return configured
    store = Path(mlruns_dir).expanduser().resolve()
    try:
        store.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise TrackingUnavailableError(f"cannot create the MLflow store folder {store}: {error}; make it "
                                       "writable or set paths.mlruns_dir") from error
    if not os.access(store, os.W_OK):
        raise TrackingUnavailableError(f"the MLflow store folder {store} is not writable; fix its permissions "
                                       "or set paths.mlruns_dir to a writable folder")
    return f"sqlite:///{store / 'mlflow.db'}"


def configured_tracking_uri(tracking, mlruns_dir: str) -> str:
    """The store of the ``tracking`` group (``tracking.tracking_uri``) and ``paths.mlruns_dir``: the one resolution
    every command uses, training or not (:func:`tracking_uri`)."""
    return tracking_uri(tracking.tracking_uri, mlruns_dir)


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast (instead of MLflow's minutes of retries) when an HTTP tracking server does not answer."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout).close()
    except OSError as error:
        raise TrackingUnavailableError(f"cannot reach the tracking server {uri}: {error}; {WAYS_OUT}") from error


@contextmanager
def fluent_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's fluent API (model flavours, ``runs:/`` URIs) on ``uri`` for a while. ``mlflow.set_tracking_uri``
    also sets ``MLFLOW_TRACKING_URI`` in the environment, where :func:`tracking_uri` would then find it: a later run
    of another store in the same process would be written into this one. The variable is restored afterwards."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """An exclusive inter-process lock beside a local SQLite store (a no-op for other stores)."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    lock_path = Path(uri[len("sqlite:///"):]).with_suffix(".lock")
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C / SIGTERM until a store write is done: an interrupt inside a SQLite transaction can leave the
    store unable to mark the run KILLED. A signal that arrived meanwhile is raised again right after the write."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {number: signal.signal(number, lambda signum, frame: held.append(signum))
                for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if held:
            signal.raise_signal(held[0])


def retry_locked(action, attempts: int = 8):
    """Run ``action`` (interrupts held), retrying while SQLite reports a lock (concurrent writers)."""
    for attempt in range(attempts):
        try:
            with interrupts_deferred():
                return action()
        except MlflowException as error:
            if "locked" not in str(error).lower() or attempt == attempts - 1:
                raise
            time.sleep(0.25 * 2**attempt)


def experiment_id(client: MlflowClient, name: str, artifact_root: Path | None) -> str:
    """The id of experiment ``name``, created (race-safely) with artifacts under ``artifact_root``."""
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    try:
        location = (artifact_root / name).as_uri() if artifact_root else None
        return retry_locked(lambda: client.create_experiment(name, artifact_location=location))
    except MlflowException:
        existing = client.get_experiment_by_name(name)  # another process created it first
        if existing is None:
            raise
        return existing.experiment_id
