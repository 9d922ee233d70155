"""A run in MLflow: its lifecycle, params, tags, metrics and artifacts (where runs are stored: :mod:`melanoma_lab.tracking.store`).

A run that raises is marked FAILED, one interrupted by Ctrl-C or SIGTERM is marked KILLED: a run is
never left RUNNING by an exception.
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from pathlib import Path
from functools import wraps
from typing import Any, Callable, TypeVar
from urllib.parse import urlparse

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from melanoma_lab.tracking.processes import owner_tags
from melanoma_lab.tracking.store import (TrackingUnavailableError, check_reachable, experiment_id, fluent_tracking_uri,
                                interrupts_deferred, retry_locked, store_lock)

MAX_PARAM_LENGTH = 6000
PARAMS_PER_BATCH = 100
MODEL_LOGGED = "model_logged"  # tag of a run whose model was logged ("true")


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dict to ``{"a.b.c": "value"}`` strings within MLflow's param length limit."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat |= flatten(value, name + ".")
        else:
            flat[name] = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
            flat[name] = flat[name][:MAX_PARAM_LENGTH]
    return flat


Method = TypeVar("Method", bound=Callable[..., Any])


def _timed(method: Method) -> Method:
    """Add the seconds spent in ``method`` to the tracker's ``seconds`` (nested timed calls count once)."""

    @wraps(method)
    def timed(self: "RunTracker", *args: Any, **kwargs: Any) -> Any:
        if self._timing:
            return method(self, *args, **kwargs)
        self._timing, started = True, time.perf_counter()
        try:
            return method(self, *args, **kwargs)
        finally:
            self._timing = False
            self.seconds += time.perf_counter() - started

    return timed  # type: ignore[return-value]


class RunTracker:
    """One MLflow run as a context manager (also the fluent API's active run, which the model flavours
    need); every ``log_*`` is a no-op when tracking is disabled. ``seconds`` is the time spent talking to
    the store and writing artifacts: the tracking overhead of the run."""

    seconds = 0.0
    _timing = False

    @_timed
    def __init__(self, enabled: bool, uri: str, experiment: str, run_name: str, artifact_root: Path | None,
                 tags: dict[str, str] | None = None, parent_run_id: str | None = None, system_metrics: bool = False):
        self.enabled, self.system_metrics = enabled, system_metrics
        self.run_id: str | None = None
        self.run_name = run_name
        self._resume: str | None = None
        if not enabled:
            return
        check_reachable(uri)
        self.uri = uri
        try:
            with store_lock(uri):  # opening a new SQLite store creates its tables: one process at a time
                self.client = MlflowClient(tracking_uri=uri)
                served = urlparse(uri).scheme in ("http", "https")  # the server stores (proxies) artifacts
                self.experiment_id = experiment_id(self.client, experiment, None if served else artifact_root)
        except MlflowException as error:
            raise TrackingUnavailableError(f"the tracking store {uri} cannot record runs: {error}") from error
        self._tags, self._parent = dict(tags or {}), parent_run_id
        self._tags |= owner_tags()  # host, pid, process start: see melanoma_lab.tracking.stale_runs

    @_timed
    def finished_run_with(self, tags: dict[str, str]) -> mlflow.entities.Run | None:
        """The newest FINISHED run of this experiment carrying all ``tags``, if any."""
        if not self.enabled:
            return None
        query = " and ".join([f"tags.{k} = '{v}'" for k, v in tags.items()] + ["attributes.status = 'FINISHED'"])
        runs = self.client.search_runs([self.experiment_id], query, max_results=1, order_by=["start_time DESC"])
        return runs[0] if runs else None

    @_timed
    def resume_unfinished(self, tags: dict[str, str], statuses: tuple[str, ...] = ("KILLED", "FAILED")) -> str | None:
        """Continue (instead of starting) the newest run carrying ``tags`` whose status is in ``statuses``."""
        if not self.enabled:
            return None
        query = " and ".join(f"tags.{k} = '{v}'" for k, v in tags.items())
        runs = [run for run in self.client.search_runs([self.experiment_id], query, order_by=["start_time DESC"])
                if run.info.status in statuses]
        self._resume = runs[0].info.run_id if runs else None
        return self._resume

    @property
    def resumed(self) -> bool:
        return bool(self.enabled and self._resume)

    @_timed
    def epoch_history(self, keys: list[str]) -> dict[str, list[float]]:
        """Per-epoch values of ``keys`` logged to this run so far, in epoch order."""
        return {key: [m.value for m in sorted(self.client.get_metric_history(self.run_id, key), key=lambda m: m.step)]
                for key in keys}

    @_timed
    def open_detached(self) -> str | None:
        """Start the run (or reopen the one found by :meth:`resume_unfinished`) without making it the active
        run of this process: for a run that outlives one call, like a sweep's parent. :meth:`close` ends it."""
        if not self.enabled:
            return None
        if self.resumed:
            self.run_id = self._resume
            retry_locked(lambda: self.client.update_run(self._resume, status="RUNNING"))
            self.set_tags(self._tags | {"resumed": "true"})
        else:
            self.run_id = retry_locked(lambda: self.client.create_run(self.experiment_id, run_name=self.run_name,
                                                                tags=self._tags)).info.run_id
        return self.run_id

    def attach(self, run_id: str | None) -> "RunTracker":
        """Log to the existing run ``run_id`` (started by another call or process)."""
        self.run_id = run_id
        self.enabled = self.enabled and run_id is not None
        return self

    @_timed
    def close(self, status: str = "FINISHED") -> None:
        """End a run started with :meth:`open_detached`."""
        if self.enabled:
            retry_locked(lambda: self.client.set_terminated(self.run_id, status=status))

    @_timed
    def child_runs(self) -> list[mlflow.entities.Run]:
        """The runs nested directly under this run, newest first."""
        if not self.enabled:
            return []
        return self.client.search_runs([self.experiment_id], f"tags.mlflow.parentRunId = '{self.run_id}'",
                                       order_by=["start_time DESC"])

    @_timed
    def __enter__(self) -> "RunTracker":
        if self.enabled:
            tags = self._tags | ({"mlflow.parentRunId": self._parent} if self._parent else {})
            with ExitStack() as stack:  # a run that cannot start leaves the fluent URI as it found it
                stack.enter_context(fluent_tracking_uri(self.uri))
                if self.resumed:
                    run = retry_locked(lambda: mlflow.start_run(run_id=self._resume, nested=self._parent is not None,
                                                                log_system_metrics=self.system_metrics))
                    self.run_id = run.info.run_id
                    self.set_tags(tags | {"resumed": "true"})
                else:
                    run = retry_locked(lambda: mlflow.start_run(experiment_id=self.experiment_id,
                                                                run_name=self.run_name, tags=tags,
                                                                nested=self._parent is not None,
                                                                log_system_metrics=self.system_metrics))
                    self.run_id = run.info.run_id
                self._fluent = stack.pop_all()
        return self

    @_timed
    def __exit__(self, exc_type, exc, tb) -> bool:
        if self.enabled and self.run_id:
            if exc_type is None:
                status = "FINISHED"
            elif issubclass(exc_type, KeyboardInterrupt):
                status = "KILLED"
            else:
                status = "FAILED"
                self.set_tags({"error": f"{exc_type.__name__}: {exc}"[:5000]})
            try:
                retry_locked(lambda: mlflow.end_run(status=status))
            finally:
                self._fluent.close()
        return False

    @_timed
    def set_tags(self, tags: dict[str, str], run_id: str | None = None) -> None:
        """Tags on this run (or on the run ``run_id`` of the same store)."""
        if self.enabled:
            for key, value in tags.items():
                retry_locked(lambda: self.client.set_tag(run_id or self.run_id, key, str(value)[:MAX_PARAM_LENGTH]))

    @_timed
    def log_params(self, params: dict[str, str]) -> None:
        if not self.enabled:
            return
        items = [mlflow.entities.Param(k, v) for k, v in params.items()]
        for start in range(0, len(items), PARAMS_PER_BATCH):
            batch = items[start:start + PARAMS_PER_BATCH]
            retry_locked(lambda: self.client.log_batch(self.run_id, params=batch))

    @_timed
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if not self.enabled:
            return
        now = int(time.time() * 1000)
        items = [mlflow.entities.Metric(k, float(v), now, step or 0) for k, v in metrics.items()
                 if v is not None and np.isfinite(v)]
        for start in range(0, len(items), 1000):
            batch = items[start:start + 1000]
            retry_locked(lambda: self.client.log_batch(self.run_id, metrics=batch))

    @_timed
    def _write(self, artifact_file: str, write: Callable[[], object]) -> None:
        """One artifact write; a full or unwritable artifact store becomes a clear TrackingUnavailableError
        (the run then ends FAILED with what it had logged)."""
        if not self.enabled:
            return
        try:
            with interrupts_deferred():
                write()
        except OSError as error:
            raise TrackingUnavailableError(
                f"cannot write artifact {artifact_file} of run {self.run_id}: {error}; free disk space or point the "
                "store elsewhere (paths.mlruns_dir or MLFLOW_TRACKING_URI)") from error

    def log_dict(self, data: dict, artifact_file: str) -> None:
        self._write(artifact_file, lambda: self.client.log_dict(self.run_id, data, artifact_file))

    def log_text(self, text: str, artifact_file: str) -> None:
        self._write(artifact_file, lambda: self.client.log_text(self.run_id, text, artifact_file))

    def log_figure(self, figure: Figure, artifact_file: str) -> None:
        """Log and close ``figure`` (closed also when tracking is off, so figures never pile up)."""
        try:
            self._write(artifact_file, lambda: self.client.log_figure(self.run_id, figure, artifact_file))
        finally:
            plt.close(figure)

    def log_table(self, table: pd.DataFrame, artifact_file: str) -> None:
        self.log_text(table.to_csv(index=False), artifact_file)

    def log_folder(self, folder: Path, artifact_path: str) -> None:
        """Every file under ``folder``, as artifacts under ``artifact_path`` (e.g. TensorBoard's logs)."""
        self._write(artifact_path, lambda: self.client.log_artifacts(self.run_id, str(folder), artifact_path))

    @_timed
    def log_model(self, write: Callable[[], object]) -> None:
        """Log the run's model with ``write`` (e.g. :func:`melanoma_lab.serving.classifier.log_classifier`, which
        logs to the active run), with the same handling of a full or unwritable store as every artifact."""
        self._write("model", write)
        self.set_tags({MODEL_LOGGED: "true"})

