"""A single-node Slurm cluster in a temporary folder, for tests: munged, slurmctld and slurmd on 127.0.0.1.

Debian's ``slurm-wlm`` and ``munge`` (``.ci/run`` installs them). Everything (key, sockets, state, logs, config)
lives in the folder; daemons run in the foreground in their own process groups and are stopped afterwards.
Clients find the cluster through ``SLURM_CONF`` (set in the environment for the duration of the block).
The box keeps no accounting database; its ``sacct`` (first on ``PATH`` inside the block) answers submitit's state
query from the controller's memory, as a lab cluster's accounting would (see :func:`write_sacct`).
Every process the box starts inherits that ``SLURM_CONF`` (the daemons, ``slurmstepd`` and the jobs): on the way
out, after its jobs are cancelled and its daemons stopped, the box ends any such process still alive.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

from melanoma_lab.tracking.server import stop_group
from melanoma_lab.study.tune_cluster import free_port

TOOLS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")
PARTITION = "box"


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists()]


def _tool(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def slurm_conf(folder: Path, munge_socket: Path) -> str:
    host = socket.gethostname().split(".")[0]
    return f"""ClusterName=box
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
CommunicationParameters=NoInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
# Slurm's default: a cancelled job has 30 s from SIGTERM to SIGKILL to close its run and write its result
KillWait=30
# a finished job stays known (to squeue, hence to the box's sacct) for longer than submitit's 600 s between polls
MinJobAge=3600
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} State=UNKNOWN
PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


SACCT = """#!/bin/sh
# sacct for a cluster without accounting storage: the one query submitit makes
# (sacct -o JobID,State,NodeList --parsable2 -j ID ...), answered by squeue from slurmctld's memory, which keeps
# a finished job (COMPLETED, CANCELLED, FAILED) for MinJobAge seconds.
ids=""
while [ $# -gt 0 ]; do
  case "$1" in
    -j) ids="$ids,$2"; shift 2 ;;
    -o) [ "$2" = "JobID,State,NodeList" ] || { echo "box sacct: only -o JobID,State,NodeList (got $2)" >&2; exit 2; }
        shift 2 ;;
    --parsable2) shift ;;
    *) echo "box sacct: unsupported argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$ids" ] || { echo "box sacct: give -j JOBID" >&2; exit 2; }
echo "JobID|State|NodeList"
exec squeue -h -r -t all -j "${ids#,}" -o "%i|%T|%N"
"""


def write_sacct(folder: Path) -> Path:
    """A ``sacct`` for the box in ``folder``; returns the folder to put first on ``PATH``. Without it submitit
    (which polls ``sacct`` for a job's state) sees a job that ended without writing its result, one killed by
    Slurm after ``KillWait`` say, as UNKNOWN forever, and a sweep waits on it for ever; with it the job reads
    CANCELLED or FAILED and the sweep fails with the job's error stream, as on a cluster with accounting."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "sacct"
    script.write_text(SACCT)
    script.chmod(0o755)
    return folder


def _daemon(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
                            env=env)


def _wait_for_node(env: dict[str, str], daemons: list[subprocess.Popen], folder: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for daemon in daemons:
            if daemon.poll() is not None:
                logs = "".join(p.read_text()[-1500:] for p in sorted(folder.glob("*.log")))
                raise RuntimeError(f"{daemon.args[0]} exited ({daemon.returncode}):\n{logs}")
        state = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, env=env).stdout.strip()
        if state in ("idle", "mix", "alloc"):
            return
        time.sleep(0.5)
    raise TimeoutError(f"the Slurm node never became idle (sinfo: {state!r})")


def processes_with_env(name: str, value: str) -> list[int]:
    """The pids of the processes (other than this one) whose environment sets ``name=value``."""
    marker, found = f"{name}={value}".encode(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environment = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or a kernel thread
            continue
        if marker in environment.split(b"\0"):
            found.append(int(entry.name))
    return found


def end_processes_with_env(name: str, value: str, grace: float = 10.0) -> list[int]:
    """SIGTERM, then after ``grace`` seconds SIGKILL, every process whose environment sets ``name=value``. A
    ``slurmstepd`` whose slurmd was stopped mid-cleanup is not in any daemon's process group and would outlive the
    box. Returns the pids it found."""
    found = alive = processes_with_env(name, value)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for pid in alive:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while alive and time.monotonic() < deadline:
            time.sleep(0.2)
            alive = processes_with_env(name, value)
    return found


def _wait_for_empty_queue(env: dict[str, str], timeout: float) -> None:
    """Until ``squeue`` lists no job (cancelled jobs take up to ``KillWait`` to end) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, env=env)
        if listed.returncode == 0 and not listed.stdout.strip():
            return
        time.sleep(0.5)


@contextmanager
def slurm_box(folder: Path) -> Iterator[dict[str, str]]:
    """Start the cluster in ``folder``; yields the environment (``SLURM_CONF``) clients need. Sets
    ``SLURM_CONF`` and ``PATH`` (the box's ``sacct`` first) in ``os.environ`` too: submitit calls
    sbatch/sacct/scancel from this process."""
    folder.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "spool"):
        (folder / sub).mkdir(exist_ok=True)
    munge_dir = folder / "munge"
    munge_dir.mkdir(mode=0o700, exist_ok=True)
    key, munge_socket = munge_dir / "munge.key", munge_dir / "munge.socket"
    subprocess.run([_tool("mungekey"), "--create", f"--keyfile={key}", "--force"], check=True, capture_output=True)
    conf = folder / "slurm.conf"
    conf.write_text(slurm_conf(folder, munge_socket))
    path = os.pathsep.join(filter(None, [str(write_sacct(folder / "bin")), os.environ.get("PATH")]))
    env = os.environ | {"SLURM_CONF": str(conf), "PATH": path}
    previous = {name: os.environ.get(name) for name in ("SLURM_CONF", "PATH")}
    with ExitStack() as stack:
        stack.callback(end_processes_with_env, "SLURM_CONF", str(conf))  # runs last, after the daemons stopped
        munged = _daemon([_tool("munged"), "--foreground", "--force", f"--socket={munge_socket}",
                          f"--key-file={key}", f"--pid-file={munge_dir}/munged.pid",
                          f"--seed-file={munge_dir}/munged.seed", f"--log-file={munge_dir}/munged.log"],
                         folder / "munged.out.log", env)
        stack.callback(stop_group, munged)
        deadline = time.monotonic() + 20
        while not munge_socket.exists():
            if munged.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"munged did not start: {(munge_dir / 'munged.log').read_text()[-1500:]}")
            time.sleep(0.2)
        daemons = [_daemon([_tool("slurmctld"), "-D", "-i", "-f", str(conf)], folder / "slurmctld.out.log", env)]
        stack.callback(stop_group, daemons[0])
        daemons.append(_daemon([_tool("slurmd"), "-D", "-f", str(conf)], folder / "slurmd.out.log", env))
        stack.callback(stop_group, daemons[1])
        _wait_for_node(env, daemons, folder)
        os.environ.update(SLURM_CONF=str(conf), PATH=path)
        try:
            yield env
        finally:
            subprocess.run(["scancel", "--partition", PARTITION], env=env, capture_output=True)
            _wait_for_empty_queue(env, timeout=45)  # let slurmd and slurmstepd end the jobs before they stop
            for name, value in previous.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
