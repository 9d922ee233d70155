"""Which process owns a run: the tags a run records when it starts, and whether that process still runs.

A pid alone can be reused by an unrelated process after the owner died, so a run also records its process's
start time (``/proc/<pid>/stat`` on Linux); a live process with the same pid but another start time is not
the run's owner. Where the start time cannot be read (no ``/proc``), a live pid counts as the owner. Containers
may share a hostname but not their pids: a run recorded in another pid namespace is never judged from here.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def start_time(pid: int) -> str | None:
    """Start time of process ``pid`` in clock ticks since boot (field 22 of ``/proc/<pid>/stat``), or None
    where it cannot be read (no such process, no ``/proc``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # fields after "(command)" start at field 3


def pid_namespace() -> str | None:
    """This process's pid namespace (e.g. ``pid:[4026531836]``; one per container), None without ``/proc``."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def slurm_job_id() -> str | None:
    """This Slurm job's id as ``scancel``/``sacct`` name it (``<array job>_<task>`` in a job array: a task's own
    ``SLURM_JOB_ID`` may equal the array's id, which names every task), or None outside Slurm."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


def owner_tags() -> dict[str, str]:
    """``host``, ``pid`` and (where known) ``pid_started``, ``pid_namespace`` and ``slurm_job_id`` of this process,
    for a run's tags."""
    known = {"pid_started": start_time(os.getpid()), "pid_namespace": pid_namespace(),
             "slurm_job_id": slurm_job_id()}
    return {"host": socket.gethostname(), "pid": str(os.getpid()), **{k: v for k, v in known.items() if v}}


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (nothing is sent to it)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def owner_alive(tags: dict[str, str]) -> bool:
    """Whether the process recorded in a run's ``tags`` (on this host) may still run: it does, as the same
    process, or it ran in another pid namespace (another container), which cannot be seen from here."""
    if tags.get("pid_namespace", pid_namespace()) != pid_namespace():
        return True
    pid = int(tags.get("pid") or 0)
    if not process_alive(pid):
        return False
    recorded, current = tags.get("pid_started"), start_time(pid)
    return recorded is None or current is None or recorded == current
