"""Which process owns a run: the tags a run records when it starts, and whether that process still runs.

A pid alone can be reused by an unrelated process after the owner died, so a run also records its process's
start time (``/proc/<pid>/stat`` on Linux); a live process with the same pid but another start time is not
the run's owner. Where the start time cannot be read (no ``/proc``), a live pid counts as the owner.
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


def owner_tags() -> dict[str, str]:
    """``host``, ``pid`` and (where known) ``pid_started`` of this process, for a run's tags."""
    started = start_time(os.getpid())
    return {"host": socket.gethostname(), "pid": str(os.getpid()), **({"pid_started": started} if started else {})}


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
    """Whether the process recorded in a run's ``tags`` (on this host) still runs, as the same process."""
    pid = int(tags.get("pid") or 0)
    if not process_alive(pid):
        return False
    recorded, current = tags.get("pid_started"), start_time(pid)
    return recorded is None or current is None or recorded == current
