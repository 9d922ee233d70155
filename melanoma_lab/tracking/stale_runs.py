"""Runs left RUNNING by a process that no longer exists (SIGKILL, the OOM killer, a power cut).

Every run records its host, pid and process start time (:mod:`melanoma_lab.tracking.processes`). Each start of a run,
a cross-validation, a sweep or a hyperparameter search marks FAILED, with an ``error`` tag, every RUNNING run
of this host whose process is gone, in every MLflow experiment of the store and whatever its config (one
search). Runs of other hosts cannot be judged from here and are left alone. By hand:

    melanoma-lab stale-runs [--repair] [key=value ...]

lists this host's stale runs (``--repair`` marks them FAILED) in the store that ``key=value`` overrides of
``conf/`` name (``paths.root_dir=DIR``, ``tracking.tracking_uri=URI``: :mod:`melanoma_lab.config.arguments`), as for
``python -m melanoma_lab`` with the same overrides.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Iterator

from mlflow.entities import Run, ViewType
from mlflow.tracking import MlflowClient

from melanoma_lab.tracking.processes import owner_alive
from melanoma_lab.tracking.store import retry_locked
from melanoma_lab.tracking.run import RunTracker

log = logging.getLogger(__name__)


def all_pages(search, *args, **kwargs) -> Iterator:
    """Every result of an MLflow ``search_*`` call, page after page."""
    token = None
    while True:
        page = search(*args, page_token=token, **kwargs)
        yield from page
        token = page.token
        if not token:
            return


def find_stale_runs(client: MlflowClient) -> list[Run]:
    """RUNNING runs of this host, in all active experiments, whose process no longer runs."""
    experiments = [e.experiment_id for e in all_pages(client.search_experiments, view_type=ViewType.ACTIVE_ONLY)]
    if not experiments:
        return []
    query = f"attributes.status = 'RUNNING' and tags.host = '{socket.gethostname()}'"
    return [run for run in all_pages(client.search_runs, experiments, query)
            if not owner_alive(run.data.tags)]


def fail_run(client: MlflowClient, run_id: str, error: str) -> None:
    """End run ``run_id`` FAILED with an ``error`` tag (its process is gone: it cannot close the run itself)."""
    retry_locked(lambda: client.set_tag(run_id, "error", error))
    retry_locked(lambda: client.set_terminated(run_id, status="FAILED"))


def fail_stale_runs(client: MlflowClient) -> list[Run]:
    """Mark FAILED (with an ``error`` tag) this host's runs whose process is gone; returns them."""
    stale = find_stale_runs(client)
    for run in stale:
        fail_run(client, run.info.run_id,
                 f"stale: process {run.data.tags.get('pid')} on {run.data.tags.get('host')} ended without closing "
                 f"the run (killed?); marked FAILED by process {os.getpid()} at {time.strftime('%Y-%m-%d %H:%M:%S')}")
    return stale


def repair_stale_runs(tracker: RunTracker) -> list[str]:
    """At a start: mark this host's stale runs in ``tracker``'s store FAILED, each with a WARNING; their ids."""
    if not tracker.enabled:
        return []
    stale = fail_stale_runs(tracker.client)
    for run in stale:
        log.warning("run %s (%s) was left RUNNING by process %s, which no longer exists: marked FAILED",
                    run.info.run_id, run.info.run_name, run.data.tags.get("pid"))
    return [run.info.run_id for run in stale]


def describe(run: Run, experiment_names: dict[str, str]) -> str:
    started = time.strftime("%Y-%m-%d %H:%M", time.localtime(run.info.start_time / 1000))
    return (f"{run.info.run_id}  {experiment_names.get(run.info.experiment_id, run.info.experiment_id)}/"
            f"{run.info.run_name}  started {started}  pid {run.data.tags.get('pid')}")
