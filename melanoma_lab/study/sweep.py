"""Hydra sweeps in MLflow: one parent run per sweep (``--multirun``), every job a child run of it.

The parent is started in ``on_multirun_start`` and its id written to ``<hydra.sweep.dir>/mlflow_parent_run``,
where every job (in this process, a joblib worker or a cluster node sharing the folder) finds it. The same
sweep run again (same overrides) reopens its parent, so jobs skipped as already FINISHED stay among its
children. A failing job ends its child run FAILED and the sweep goes on; a job that fails before its child run
starts (a user error in its config or data) leaves ``job_error.json`` in its folder, as does a Slurm job that ends
without a result (:mod:`melanoma_lab.study.lost_jobs`). When the sweep ends, the
parent gets ``sweep_summary.csv`` (the latest child of each job, or the early error, key metrics), the console the
same runs side by side with the MLflow UI link (:mod:`melanoma_lab.study.sweep_table`), and the command exits
with status 1 naming the jobs that failed (Hydra turns a callback's exceptions into warnings, hence ``SystemExit``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from melanoma_lab.errors import UserError
from melanoma_lab.tracking.provenance import code_version
from melanoma_lab.data.staging import write_atomically

log = logging.getLogger(__name__)
PARENT_FILE = "mlflow_parent_run"
JOB_ERROR_FILE = "job_error.json"


def parent_run_id() -> str | None:
    """The sweep's parent run id inside a job of a ``--multirun`` sweep, else None."""
    runtime = HydraConfig.get()
    if runtime.mode != RunMode.MULTIRUN:
        return None
    path = Path(runtime.sweep.dir) / PARENT_FILE
    return path.read_text().strip() if path.is_file() else None


def sweep_identity(config: DictConfig) -> dict[str, str]:
    """Tags that identify a sweep: a hash of its command-line overrides (the swept lists included) and the code
    version (after a code change its jobs train again, under a new parent)."""
    overrides = sorted(OmegaConf.to_container(config.hydra.overrides.task))
    return {"sweep_hash": hashlib.sha256(json.dumps(overrides).encode()).hexdigest()[:16],
            "code_version": code_version()}


def summary_table(children: list[Any], metrics: list[str]) -> pd.DataFrame:
    """One row per job (its newest child run, by ``overrides`` tag): run, status, overrides and ``metrics``."""
    rows, seen = [], set()
    for run in children:  # newest first
        overrides = run.data.tags.get("overrides", run.info.run_id)
        if overrides in seen:
            continue
        seen.add(overrides)
        rows.append({"run_name": run.info.run_name, "run_id": run.info.run_id, "status": run.info.status,
                     "experiment": run.data.tags.get("experiment"), "overrides": overrides,
                     **{k: run.data.metrics.get(k) for k in metrics}})
    return pd.DataFrame(rows, columns=["run_name", "run_id", "status", "experiment", "overrides", *metrics])


def with_job_errors(table: pd.DataFrame, sweep_dir: Path) -> pd.DataFrame:
    """``table`` plus a FAILED row (no run) for each job of this sweep that failed before its child run started;
    such a row replaces a FINISHED child of the same job from an earlier run of the sweep."""
    errors = [json.loads(path.read_text()) for path in sorted(sweep_dir.rglob(JOB_ERROR_FILE))]
    failed_here = {error["overrides"] for error in errors}
    kept = table[~(table["overrides"].isin(failed_here) & (table["status"] == "FINISHED"))]
    early = [{"status": "FAILED", "overrides": error["overrides"], "error": error["error"]} for error in errors
             if error["overrides"] not in set(kept["overrides"])]
    return pd.concat([kept, pd.DataFrame(early)], ignore_index=True) if early else table


class JobCancelled(RuntimeError):
    """The cluster cancelled this job (SIGTERM, e.g. ``scancel``)."""


def _cancelled(signum: int, frame: Any) -> None:
    raise JobCancelled(f"cancelled by the cluster (signal {signum}); rerun the sweep to redo this job")


class MlflowSweepCallback(Callback):
    """Parent/child MLflow runs for Hydra sweeps (configured in ``conf/hydra/default.yaml``)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from melanoma_lab.study.lost_jobs import lost_jobs_fail_alone
        from melanoma_lab.tracking.identity import make_tracker, study_tags
        from melanoma_lab.tracking.stale_runs import repair_stale_runs

        lost_jobs_fail_alone(JOB_ERROR_FILE, PARENT_FILE)  # a Slurm job killed before its result fails alone
        identity = sweep_identity(config)
        tags = study_tags(config.study, config.dataset.name, config.trainer.seed)
        parent = make_tracker(config.tracking, config.paths.mlruns_dir, f"sweep-{Path(config.hydra.sweep.dir).name}",
                              {**tags, "kind": "sweep", "sweep_dir": str(Path(config.hydra.sweep.dir).resolve()),
                               "overrides": " ".join(config.hydra.overrides.task), **identity})
        repair_stale_runs(parent)
        parent.resume_unfinished(identity, statuses=("FINISHED", "FAILED", "KILLED"))
        run_id = parent.open_detached()
        if run_id is None:
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(sweep_dir / PARENT_FILE, run_id)
        log.info("sweep parent run %s (%s)", run_id, "reopened" if parent.resumed else "new")

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        """A job run again drops the error its previous attempt left. In a Slurm job (hydra-submitit-launcher),
        ``scancel`` ends the job's child run FAILED and the sweep lists it (submitit otherwise ignores SIGTERM,
        and the SIGKILL that follows leaves the run RUNNING and the launcher without the job's result)."""
        if config.hydra.mode == RunMode.MULTIRUN:
            (Path(config.hydra.runtime.output_dir) / JOB_ERROR_FILE).unlink(missing_ok=True)
        if os.environ.get("SUBMITIT_EXECUTOR") == "slurm" and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _cancelled)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        """A failed job is logged here and reported when the sweep ends, so the other jobs still run and the
        parent is completed. A single run (no sweep) keeps its error: Hydra reports it."""
        if job_return.status != JobStatus.FAILED or config.hydra.mode != RunMode.MULTIRUN:
            return
        try:
            job_return.return_value  # raises the job's exception
        except Exception as error:  # noqa: BLE001 - any job error is reported when the sweep ends
            log.error("sweep job %s failed: %s", config.hydra.job.num, error,
                      exc_info=None if isinstance(error, UserError) else error)  # a user error needs no traceback
            error_file = Path(config.hydra.runtime.output_dir) / JOB_ERROR_FILE
            write_atomically(error_file, json.dumps({"overrides": " ".join(config.hydra.overrides.task),
                                              "error": f"{type(error).__name__}: {error}"}))
        job_return.status, job_return.return_value = JobStatus.COMPLETED, None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from melanoma_lab.evaluation import registry
        from melanoma_lab.study.sweep_table import TABLE_METRICS, sweep_report, ui_link
        from melanoma_lab.tracking.identity import make_tracker

        path = Path(config.hydra.sweep.dir) / PARENT_FILE
        if not path.is_file():
            return
        parent = make_tracker(config.tracking, config.paths.mlruns_dir, "sweep", {}).attach(path.read_text().strip())
        keys = registry.keys(registry.SUMMARY, registry.RUN_PREFIXES)  # each job's own run
        metrics = tuple(dict.fromkeys([*keys, *TABLE_METRICS]))
        table = with_job_errors(summary_table(parent.child_runs(), metrics), Path(config.hydra.sweep.dir))
        failed = table[table["status"] != "FINISHED"]
        parent.log_table(table, "sweep_summary.csv")
        parent.log_metrics({"jobs": len(table), "failed_jobs": len(failed)})
        write_atomically(Path(config.hydra.sweep.dir) / "sweep_summary.csv", table.to_csv(index=False))
        parent.close("FAILED" if len(failed) else "FINISHED")
        if len(table):  # what the sweep ran, side by side, as the store has it
            link = ui_link(parent.uri, parent.experiment_id, parent.run_id, list(config.hydra.overrides.task))
            print(sweep_report(table, parent.run_id, link), flush=True)
        if len(failed):
            raise SystemExit(f"{len(failed)} of {len(table)} sweep jobs failed ("
                                   + "; ".join(failed["overrides"]) + f"); their child runs of parent run "
                                   f"{parent.run_id} (or its sweep_summary.csv, for a job that failed before its run "
                                   "started) carry the error, and a rerun of the same sweep redoes them")
