"""A Slurm job that ends without a result fails alone in its sweep (hydra-submitit-launcher's ``submitit_slurm``).

Slurm can end a job before it writes its result: the OOM killer, a node that fails, a cancelled job still busy
``KillWait`` seconds after SIGTERM. hydra-submitit's launcher waits on each job's ``results()``, which raises for
such a job (submitit's ``UncompletedJobError``): the sweep command stops there, the jobs after it run on unwatched,
the parent run stays RUNNING and no sweep summary is written. With :func:`lost_jobs_fail_alone` (called by the
sweep callback, :class:`melanoma_lab.study.sweep.MlflowSweepCallback`, in the process that launches the sweep) such
a job is a failed job of the sweep, like one that raised: its child run (found by its ``slurm_job_id`` tag) ends
FAILED with a ``LostJob`` error, its ``job_error.json`` is written where the job's own outputs go, the launcher waits
for every other job, and the sweep ends FAILED naming it; the same command again redoes only that job. A job is
lost only once its result is still missing a minute after Slurm (``sacct``) says it ended: a cancelled job may
still be closing its run then.

Hydra instantiates launchers only from its ``hydra_plugins`` namespace package, which this project's editable
install cannot join (setuptools' editable finder hides the portion from Hydra's plug-in scan), hence a wrapper of
``SlurmJob.results`` for the sweep's process rather than a launcher subclass. It leaves every other submitit job
(one not submitted by a hydra-submitit launcher) as submitit has it.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, open_dict

from melanoma_lab.data.staging import write_atomically

log = logging.getLogger(__name__)
RESULT_GRACE_S = 45.0  # after submitit's own 15 s: a cancelled job has KillWait (30 s by default) to write its result


class LostJob(RuntimeError):
    """A Slurm job ended without its result."""


def lost_jobs_fail_alone(error_file: str, parent_file: str) -> None:
    """From now on in this process, a hydra-submitit Slurm job that ends without a result gives a failed job of its
    sweep (:func:`lost_job_return`: its error in ``error_file`` of its folder, the parent run's id read from
    ``parent_file`` of the sweep's) instead of raising. Does nothing without submitit (the ``cluster`` extra), and
    nothing the second time."""
    try:
        from submitit.core.utils import UncompletedJobError
        from submitit.slurm.slurm import SlurmJob
    except ImportError:
        return
    results = SlurmJob.results
    if getattr(results, "lost_jobs_fail_alone", False):
        return

    @functools.wraps(results)
    def results_or_failure(job: SlurmJob) -> list[Any]:
        try:
            return results(job)
        except UncompletedJobError as error:
            if _result_arrives(job, RESULT_GRACE_S):  # a cancelled job still closing its run (sacct already says so)
                return results(job)
            return [lost_job_return(job, error, error_file, parent_file)]

    results_or_failure.lost_jobs_fail_alone = True  # type: ignore[attr-defined]
    SlurmJob.results = results_or_failure


def _result_arrives(job: Any, seconds: float) -> bool:
    """Whether submitit ``job``'s result file appears within ``seconds``."""
    deadline = time.monotonic() + seconds
    while not job.paths.result_pickle.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(1)
    return True


def lost_job_return(job: Any, error: Exception, error_file: str, parent_file: str) -> JobReturn:
    """The failed job of a sweep for submitit ``job``, which ended without a result: its error kept beside its
    outputs and, where the store answers, on its child run. ``error`` is raised again for a job that no
    hydra-submitit launcher submitted."""
    try:
        from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
    except ImportError:
        raise error from None
    submission = job.submission()
    launcher = submission.function
    if not isinstance(launcher, BaseSubmititLauncher):
        raise error
    overrides, _, number = submission.args[:3]  # what the launcher gave this job (its __call__)
    lost = LostJob(f"Slurm job {job.job_id} ended without a result (state {job.state}): killed by Slurm, the OOM "
                   f"killer or a failed node; its log: {job.paths.stderr}")
    log.error("sweep job %s failed: %s\n%s", number, lost, str(error)[-2000:])
    text = f"{type(lost).__name__}: {lost}"
    write_atomically(_output_dir(launcher, overrides, number, job.job_id) / error_file,
                     json.dumps({"overrides": " ".join(overrides), "error": text}))
    try:
        fail_child_runs(launcher.config, Path(launcher.config.hydra.sweep.dir) / parent_file, job.job_id, text)
    except Exception as store_error:  # noqa: BLE001 - the sweep still ends: the summary counts a RUNNING child failed
        log.warning("could not mark the child run of lost job %s FAILED: %s", job.job_id, store_error)
    return JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED, _return_value=None)


def _output_dir(launcher: Any, overrides: list[str], number: int, job_id: str) -> Path:
    """The folder the job writes to (``hydra.sweep.dir``/``hydra.sweep.subdir``), as the launcher composes it."""
    config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
    with open_dict(config.hydra.job) as job:
        job.num, job.id = number, job_id
    return Path(config.hydra.sweep.dir) / str(config.hydra.sweep.subdir)


def fail_child_runs(config: DictConfig, path: Path, job_id: str, error: str) -> list[str]:
    """Mark FAILED, with ``error``, the RUNNING child runs that Slurm job ``job_id`` started under the parent run
    whose id is in ``path``; their ids (none when the job was lost before its run started, or nothing is tracked)."""
    from melanoma_lab.tracking.identity import make_tracker
    from melanoma_lab.tracking.stale_runs import fail_run

    if not path.is_file():
        return []
    parent = make_tracker(config.tracking, config.paths.mlruns_dir, "sweep", {}).attach(path.read_text().strip())
    lost = [run.info.run_id for run in parent.child_runs()
            if run.data.tags.get("slurm_job_id") == job_id and run.info.status == "RUNNING"]
    for run_id in lost:
        fail_run(parent.client, run_id, error)
    return lost
