"""A lab's cluster on loopback: an MLflow server on PostgreSQL, Slurm (submitit), Optuna, and faults.

Every service is started here, bound to 127.0.0.1 and stopped afterwards. Needs Debian's postgresql,
slurm-wlm and munge and the `cluster` extra (`.ci/run` and `make test` install them); skipped without them.
Each test prints its sweep's wall time and run tree (`pytest -s` shows them).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from melanoma_lab.tracking.server import (PostgresStore, postgres_bin, start_mlflow_server, stop_group,
                                          tracking_server, wait_until_up)
from melanoma_lab.tracking.run import flatten
from melanoma_lab.study.tune_cluster import free_port
from tests.conftest import TINY
from tests.ray_box import ray_head
from tests.slurm_box import PARTITION, missing_tools, processes_with_env, slurm_box

def _absent(*modules: str) -> list[str]:
    return [module for module in modules if importlib.util.find_spec(module.split(".")[0]) is None
            or importlib.util.find_spec(module) is None]


MISSING = ([] if postgres_bin() else ["postgresql"]) + missing_tools() + _absent(
    "submitit", "hydra_plugins.hydra_submitit_launcher", "hydra_plugins.hydra_optuna_sweeper", "psycopg2")
RAY_MISSING = _absent("ray", "hydra_plugins.hydra_ray_launcher")
HOW = "apt-get install postgresql slurm-wlm munge; make install-cluster; .ci/run does both"
if (MISSING or RAY_MISSING) and os.environ.get("MELANOMA_LAB_REQUIRE_CLUSTER"):  # .ci/run: in CI these must run
    raise RuntimeError(f"MELANOMA_LAB_REQUIRE_CLUSTER is set but {', '.join(MISSING + RAY_MISSING)} are missing "
                       f"({HOW})")
pytestmark = [pytest.mark.cluster, pytest.mark.slow,
              pytest.mark.skipif(bool(MISSING), reason=f"cluster tools missing: {', '.join(MISSING)} ({HOW})")]
QUIET = [*TINY, "tracking.log_model=false"]
SLURM = ["hydra/launcher=submitit_slurm", f"hydra.launcher.partition={PARTITION}", "hydra.launcher.cpus_per_task=1",
         "hydra.launcher.timeout_min=20"]
GRID = ["experiment=m1,m2", "trainer.seed=1,2"]
SHOWN = ("experiment", "trainer.seed", "trainer.epochs", "optimizer.learning_rate")


@pytest.fixture(scope="module")
def services_dir():
    """A folder the ``postgres`` user can reach (pytest's own temporary folders are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="melanoma-cluster-"))
    folder.chmod(0o711)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def server(services_dir):
    """One PostgreSQL-backed MLflow server (proxied artifacts) for the module's tests; its URI."""
    with tracking_server(services_dir / "server", free_port(), free_port()) as uri:
        yield uri


@pytest.fixture(scope="module")
def slurm(services_dir):
    with slurm_box(services_dir / "slurm") as env:
        yield env


def _command(root: Path, study: str, *args: str, multirun: bool = True) -> list[str]:
    return [sys.executable, "-m", "melanoma_lab", *(["--multirun"] if multirun else []), *QUIET, *args,
            f"study.name={study}", f"paths.root_dir={root}", "hydra.sweep.dir=${paths.experiments_dir}/multiruns/"
            + study]


def _sweep(uri: str, root: Path, study: str, *args: str, timeout: float = 900) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run(_command(root, study, *args), env=os.environ | {"MLFLOW_TRACKING_URI": uri},
                            capture_output=True, text=True, timeout=timeout)
    return result, time.monotonic() - started


def run_tree(uri: str, study: str):
    """(parent, children) of the study's sweep parent in the server."""
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(study).experiment_id
    runs = client.search_runs([experiment])
    [parent] = [r for r in runs if r.data.tags.get("kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return parent, children


def _show(label: str, seconds: float, parent, children) -> None:
    print(f"\n[{label}] {seconds:.0f} s  parent {parent.info.run_name} {parent.info.status} "
          f"{dict(parent.data.metrics)}")
    for child in sorted(children, key=lambda r: (r.data.tags.get("overrides", ""), r.info.start_time)):
        swept = " ".join(f"{key[9:]}={value}" for key, value in sorted(child.data.tags.items())
                         if key.startswith("override.") and key[9:] in SHOWN)
        print(f"    child {child.info.run_name} {swept}: {child.info.status} "
              f"val_balanced_accuracy={child.data.metrics.get('val_balanced_accuracy')}")


def _assert_2x2_landed(uri: str, study: str) -> None:
    parent, children = run_tree(uri, study)
    assert parent.info.status == "FINISHED" and parent.data.metrics == {"jobs": 4, "failed_jobs": 0}
    assert sorted((r.data.tags["experiment"], r.data.tags["seed"]) for r in children) == [
        ("m1", "1"), ("m1", "2"), ("m2", "1"), ("m2", "2")]
    client = MlflowClient(uri)
    for child in children:
        assert child.info.status == "FINISHED" and "val_balanced_accuracy" in child.data.metrics
        assert child.info.artifact_uri.startswith("mlflow-artifacts:/")  # proxied by the server
        assert client.list_artifacts(child.info.run_id)  # stored through the server
    assert "sweep_summary.csv" in {a.path for a in client.list_artifacts(parent.info.run_id)}


def test_tracking_server_command_serves_postgres_store_and_stops_everything(services_dir):
    root, port, db_port = services_dir / "cli-root", free_port(), free_port()
    folder = root / "mlruns" / "server"  # paths.mlruns_dir/server of the conf/ the command composes
    server = subprocess.Popen([sys.executable, "-m", "melanoma_lab.cli.server", f"paths.root_dir={root}",
                               "--port", str(port), "--db-port", str(db_port), "--workers", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health", server)
        client = MlflowClient(f"http://127.0.0.1:{port}")
        run = client.create_run(client.create_experiment("server-check"))
        client.log_metric(run.info.run_id, "loss", 0.5)
        client.log_text(run.info.run_id, "hello", "note.txt")
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=60)
    assert server.returncode == 0, err[-2000:]
    assert f"MLFLOW_TRACKING_URI=http://127.0.0.1:{port}" in out
    assert list(folder.glob("artifacts/*/*/artifacts/note.txt"))  # proxied: stored by the server
    assert not (folder / "postgres" / "postmaster.pid").exists()  # PostgreSQL stopped
    listening = subprocess.run(["ss", "-Hltn", f"( sport = :{port} or sport = :{db_port} )"], capture_output=True,
                               text=True).stdout if shutil.which("ss") else ""
    assert listening.strip() == ""
    store = PostgresStore(folder / "postgres", db_port)  # the run is in PostgreSQL, not in a SQLite file
    store.start()
    try:
        assert store.sql("SELECT count(*) FROM metrics WHERE key = 'loss'", "mlflow") == "1"
    finally:
        store.stop()


def test_submitit_local_2x2_sweep_lands_as_parent_and_children(server, tmp_path):
    """(joblib into the server: test_two_sweeps_writing_at_once_lose_nothing)"""
    study = "cluster-submitit_local"
    result, seconds = _sweep(server, tmp_path, study, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=20",
                             *GRID)
    assert result.returncode == 0, result.stderr[-3000:]
    _show(study, seconds, *run_tree(server, study))
    _assert_2x2_landed(server, study)


def test_the_slurm_box_leaves_no_process_of_its_own_behind(services_dir):
    """CI found two ``slurmstepd`` ([7.batch], [7.0]) alive 19 minutes after the cluster tests: stepd runs in a
    session of its own, outside every daemon's process group. A job still running when the box closes, and a
    process in its own session under the box's ``SLURM_CONF`` (as stepd is), both end with the box."""
    with slurm_box(services_dir / "slurm-teardown") as env:
        conf = env["SLURM_CONF"]
        stray = subprocess.Popen(["sleep", "600"], env=env, start_new_session=True)
        job = subprocess.run(["sbatch", "--parsable", f"--partition={PARTITION}", "--wrap", "srun sleep 600",
                              f"--output={services_dir}/slurm-teardown/job-%j.out"],
                             env=env, capture_output=True, text=True, check=True).stdout.strip()
        _wait_for(lambda: _running(env, job), 60, f"job {job} running")
        _wait_for(lambda: {f"[{job}.batch]", f"[{job}.0]", "sleep 600"} <= {
            _command_line(pid) for pid in processes_with_env("SLURM_CONF", conf) if pid != stray.pid}, 30,
            "the batch step, step 0 and its sleep")
    try:
        stray.wait(timeout=5)
    finally:
        stray.kill()
    left = processes_with_env("SLURM_CONF", conf)
    assert left == [], [_command_line(pid) for pid in left]


def _running(env: dict[str, str], job_id: str) -> bool:
    """Whether Slurm job ``job_id`` of the box (``env``) is running."""
    return subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%t"], env=env, capture_output=True,
                          text=True).stdout.strip() == "R"


def _command_line(pid: int) -> str:
    """A process's command line as ``ps`` shows it, with a slurmstepd as its step (``[7.0]``), sleep's path cut;
    "" once the process is gone."""
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode(errors="replace").split("\0")
    except OSError:
        return ""
    if words[0].startswith("slurmstepd: "):
        return words[0].removeprefix("slurmstepd: ")
    return " ".join([Path(words[0]).name, *words[1:]])


def test_slurm_2x2_sweep_lands_as_parent_and_children(server, slurm, tmp_path):
    result, seconds = _sweep(server, tmp_path, "cluster-slurm", *SLURM, *GRID)
    assert result.returncode == 0, result.stderr[-3000:]
    parent, children = run_tree(server, "cluster-slurm")
    _show("slurm", seconds, parent, children)
    _assert_2x2_landed(server, "cluster-slurm")
    assert len({r.data.tags["slurm_job_id"] for r in children}) == 4  # each job ran as its own Slurm job


@pytest.mark.skipif(bool(RAY_MISSING), reason=f"{', '.join(RAY_MISSING)} missing (make install-cluster)")
def test_ray_2x2_sweep_lands_as_parent_and_children(server, services_dir, tmp_path):
    """A local Ray cluster (`ray start --head`) whose workers know the tracking server, as a lab's nodes do."""
    with ray_head(services_dir / "ray", os.environ | {"MLFLOW_TRACKING_URI": server}) as address:
        result, seconds = _sweep(server, tmp_path, "cluster-ray", "hydra/launcher=ray",
                                 f"hydra.launcher.ray.init.address={address}",
                                 "+hydra.launcher.ray.init.object_store_memory=null",  # not for an existing cluster
                                 "+hydra.launcher.ray.remote.num_cpus=1", *GRID)
    assert result.returncode == 0, result.stderr[-3000:]
    parent, children = run_tree(server, "cluster-ray")
    _show("ray", seconds, parent, children)
    _assert_2x2_landed(server, "cluster-ray")


def test_optuna_trials_are_children_maximising_validation_balanced_accuracy(server, tmp_path):
    study = "cluster-optuna"
    root = tmp_path / "experiments" / "multiruns" / study
    result, seconds = _sweep(server, tmp_path, study, "hydra/sweeper=optuna", "hydra.sweeper.direction=maximize",
                             "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=1", "experiment=m1",
                             "optimizer.learning_rate=tag(log,interval(0.0005,0.01))",
                             "hydra.sweeper.sampler.seed=3")
    assert result.returncode == 0, result.stderr[-3000:]
    parent, children = run_tree(server, study)
    print(f"    optuna: {(root / 'optimization_results.yaml').read_text()}")
    _show("optuna", seconds, parent, children)
    assert parent.info.status == "FINISHED" and len(children) == 3
    assert all(r.info.status == "FINISHED" for r in children)
    import yaml

    from melanoma_lab.study.objective import sweep_objective

    best = yaml.safe_load((root / "optimization_results.yaml").read_text())
    # the objective: each child's validation balanced accuracy over the frequent classes (study.sweep_objective=val)
    scores = {float(r.data.params["optimizer.learning_rate"]): sweep_objective(r.data.metrics, "val", False)
              for r in children}
    assert all("val_balanced_accuracy_frequent" in r.data.metrics for r in children)
    assert best["best_value"] == pytest.approx(max(scores.values()))
    [best_child] = [lr for lr in scores if lr == pytest.approx(best["best_params"]["optimizer.learning_rate"])]
    assert scores[best_child] == pytest.approx(best["best_value"])  # the objective is the child's metric


def _wait_for(predicate, timeout: float, what: str, process: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: the process ended first ({process.returncode}): "
                                 f"{process.communicate()[1][-3000:]}")
        time.sleep(0.3)
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s")


def _epochs_logged(client: MlflowClient, study: str, query: str = "") -> tuple[str, int] | None:
    """(run id, epochs of val_loss logged) of the study's newest run matching ``query``, once it has one."""
    experiment = client.get_experiment_by_name(study)
    runs = client.search_runs([experiment.experiment_id], query, order_by=["start_time DESC"]) if experiment else []
    runs = [r for r in runs if r.data.tags.get("kind") != "sweep"]
    if not runs:
        return None
    return runs[0].info.run_id, len(client.get_metric_history(runs[0].info.run_id, "val_loss"))


def test_server_down_20s_during_training_loses_no_epoch(services_dir, tmp_path):
    """The server stops for 20 s after the first epoch: training waits in MLflow's HTTP retries (about two
    minutes of backoff), then every epoch's metrics arrive and the run ends FINISHED."""
    folder, port, study, epochs = services_dir / "outage", free_port(), "cluster-outage", 12
    store = PostgresStore(folder / "postgres", free_port())
    store.start()
    server = start_mlflow_server(store, folder / "artifacts", port)
    uri = f"http://127.0.0.1:{port}"
    job = subprocess.Popen(_command(tmp_path, study, "experiment=m1", f"trainer.epochs={epochs}", multirun=False),
                           env=os.environ | {"MLFLOW_TRACKING_URI": uri}, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    client = MlflowClient(uri)
    try:
        run_id, logged = _wait_for(lambda: (found := _epochs_logged(client, study)) and found[1] >= 1 and found,
                                   300, "the first epoch's metrics", job)
        stop_group(server)
        down = time.monotonic()
        time.sleep(20)
        assert job.poll() is None, "the run gave up while the server was down"
        server = start_mlflow_server(store, folder / "artifacts", port)
        print(f"\n[outage] server down {time.monotonic() - down:.0f} s after epoch {logged} of {epochs}")
        _, err = job.communicate(timeout=400)
        assert job.returncode == 0, err[-3000:]
        run = client.get_run(run_id)
        history = client.get_metric_history(run_id, "val_loss")
        print(f"[outage] run {run.info.status}, val_loss logged for steps {sorted(m.step for m in history)}")
        assert run.info.status == "FINISHED" and sorted(m.step for m in history) == list(range(epochs))
        assert "val_balanced_accuracy" in run.data.metrics
    finally:
        if job.poll() is None:
            job.kill()
            job.communicate()
        stop_group(server)
        store.stop()


def test_two_sweeps_writing_at_once_lose_nothing(server, tmp_path):
    study = "cluster-concurrent"
    sweeps = [subprocess.Popen(_command(tmp_path / name, study, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                                        "experiment=m1,m2", f"trainer.seed={seed}", "trainer.epochs=2")
                               + [f"hydra.sweep.dir={tmp_path / name / 'sweep'}"],
                               env=os.environ | {"MLFLOW_TRACKING_URI": server}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for name, seed in (("a", 1), ("b", 2))]
    started = time.monotonic()
    for sweep in sweeps:
        _, err = sweep.communicate(timeout=900)
        assert sweep.returncode == 0, err[-3000:]
    client = MlflowClient(server)
    runs = client.search_runs([client.get_experiment_by_name(study).experiment_id])
    parents = [r for r in runs if r.data.tags.get("kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("kind") != "sweep"]
    print(f"\n[two sweeps at once] {time.monotonic() - started:.0f} s: {len(parents)} parents, {len(children)} children")
    assert len(parents) == 2 and all(p.data.metrics == {"jobs": 2, "failed_jobs": 0} for p in parents)
    assert sorted((r.data.tags["mlflow.parentRunId"] in {p.info.run_id for p in parents}, r.data.tags["experiment"],
                   r.data.tags["seed"]) for r in children) == [(True, "m1", "1"), (True, "m1", "2"),
                                                               (True, "m2", "1"), (True, "m2", "2")]
    for run in children:
        logged = yaml.safe_load(open(client.download_artifacts(run.info.run_id, "config/config.yaml")))
        assert run.info.status == "FINISHED" and set(run.data.params) == set(flatten(logged))  # every param arrived
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [0, 1]
        assert "val_balanced_accuracy" in run.data.metrics


def _job_logs(root: Path, job_id: str, lines: int = 30) -> str:
    """The last ``lines`` of each submitit log of Slurm job ``job_id`` under ``root``."""
    return "\n".join(f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
                     for path in sorted(root.rglob(f".submitit/{job_id}/*_log.*")))


def _raised(call) -> BaseException | None:
    try:
        call()
    except BaseException as error:  # noqa: BLE001 - the test inspects what was raised
        return error
    return None


def test_a_slurm_job_killed_without_a_result_fails_its_wait_instead_of_hanging_it(slurm, tmp_path):
    """CI once waited out 600 s on a sweep after ``scancel``: a job that ends without writing its result (killed
    by Slurm after ``KillWait``, by the OOM killer, ...) left submitit polling ``sacct`` for its state, which a
    cluster without accounting never gives, for ever. The box's ``sacct`` reports the job ended, and the wait
    fails with submitit's error within submitit's 15 s grace for the result."""
    import submitit
    from submitit.core.utils import UncompletedJobError

    executor = submitit.SlurmExecutor(folder=tmp_path / "jobs")
    executor.update_parameters(partition=PARTITION, time=10, cpus_per_task=1)
    job = executor.submit(time.sleep, 600)
    _wait_for(lambda: _running(slurm, job.job_id), 60, f"job {job.job_id} running")
    subprocess.run(["scancel", "--full", "--signal=KILL", job.job_id], check=True, env=slurm)  # no result written
    outcome: dict[str, BaseException | None] = {}
    waiter = threading.Thread(target=lambda: outcome.update(error=_raised(job.result)), daemon=True)
    waiter.start()
    waiter.join(180)
    assert not waiter.is_alive(), f"still waiting for job {job.job_id} 180 s after it was killed"
    assert isinstance(outcome["error"], UncompletedJobError), outcome["error"]
    assert "has not produced any output" in str(outcome["error"]) and not job.paths.result_pickle.exists()
    assert job.state in ("CANCELLED", "FAILED"), job.state


def _stop_the_long_job(server: str, root: Path, study: str, epochs: str, stop) -> tuple[str, list[str]]:
    """Sweep m1 over ``trainer.epochs=<epochs>`` (a 30-epoch job and a 2-epoch one) on the box's Slurm, stop the
    30-epoch job after its first epoch with ``stop(job id, run)``: the sweep ends FAILED naming that job
    alone, whose child run ends FAILED, the other job FINISHED; then the same sweep again trains only the stopped job.
    Returns the stopped run's ``error`` tag and the errors the first sweep left in its jobs' ``job_error.json``."""
    long_epochs, grid = 30, [*SLURM, "experiment=m1", f"trainer.epochs={epochs}"]
    sweep = subprocess.Popen(_command(root, study, *grid), env=os.environ | {"MLFLOW_TRACKING_URI": server},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = MlflowClient(server)
    started = time.monotonic()
    query = f"tags.`override.trainer.epochs` = '{long_epochs}'"
    run_id, _ = _wait_for(lambda: (found := _epochs_logged(client, study, query)) and found[1] >= 1 and found,
                          600, "the long job's first epoch", sweep)
    job_id = client.get_run(run_id).data.tags["slurm_job_id"]
    stop(job_id, client.get_run(run_id))
    try:
        _, err = sweep.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        sweep.kill()
        raise AssertionError(f"the sweep did not end within 600 s of stopping job {job_id}; its error stream:\n"
                             f"{sweep.communicate()[1][-2000:]}\n{_job_logs(root, job_id)}") from None
    first = time.monotonic() - started
    failure = err[max(0, err.rfind("sweep jobs failed") - 10):]  # err may begin with it
    assert sweep.returncode == 1 and "1 of 2 sweep jobs failed" in failure, err[-3000:]
    assert f"trainer.epochs={long_epochs}" in failure and "trainer.epochs=2 " not in failure
    parent, children = run_tree(server, study)
    _show(f"{study}: first sweep, job {job_id} stopped", first, parent, children)
    stopped = client.get_run(run_id)
    assert stopped.info.status == "FAILED", stopped.info.status
    assert len(client.get_metric_history(run_id, "val_loss")) < long_epochs
    assert parent.info.status == "FAILED" and parent.data.metrics == {"jobs": 2, "failed_jobs": 1}
    finished = [r for r in children if r.info.status == "FINISHED"]
    assert [r.data.tags["override.trainer.epochs"] for r in finished] == ["2"]  # the other job finished
    sweep_dir = root / "experiments" / "multiruns" / study
    assert sorted(pd.read_csv(sweep_dir / "sweep_summary.csv")["status"]) == ["FAILED", "FINISHED"]
    job_errors = [json.loads(path.read_text())["error"] for path in sweep_dir.rglob("job_error.json")]

    result, seconds = _sweep(server, root, study, *grid)  # the same sweep again: only the stopped job runs
    assert result.returncode == 0, result.stderr[-3000:]
    parent, children = run_tree(server, study)
    _show(f"{study}: rerun", seconds, parent, children)
    assert parent.info.status == "FINISHED" and parent.data.metrics == {"jobs": 2, "failed_jobs": 0}
    by_job = {}
    for child in children:
        by_job.setdefault(child.data.tags["override.trainer.epochs"], []).append(child.info.status)
    assert sorted(by_job["2"]) == ["FINISHED"]  # reused, not trained again
    assert sorted(by_job[str(long_epochs)]) == ["FAILED", "FINISHED"]
    assert not list(sweep_dir.rglob("job_error.json"))  # the job run again dropped its error
    return stopped.data.tags["error"], job_errors


def test_slurm_job_cancelled_mid_training_fails_alone_and_rerun_redoes_only_it(server, slurm, tmp_path):
    """``scancel``: SIGTERM, which the job turns into JobCancelled (its run ends FAILED, its result is written)."""
    error, job_errors = _stop_the_long_job(
        server, tmp_path, "cluster-scancel", "2,30",
        lambda job_id, run: subprocess.run(["scancel", job_id], check=True, env=slurm))
    assert error.startswith("JobCancelled") and job_errors == [error], (error, job_errors)


def test_slurm_job_killed_mid_training_fails_alone_and_the_sweep_still_ends(server, slurm, tmp_path):
    """SIGKILL (the OOM killer, a failed node, ``KillWait`` run out): the job writes nothing. hydra-submitit's
    launcher raised at it (the killed job is the first one waited on here), leaving the parent RUNNING, no summary,
    and the other job unwatched; now (melanoma_lab/study/lost_jobs.py) it fails alone and its run ends FAILED."""
    error, job_errors = _stop_the_long_job(
        server, tmp_path, "cluster-sigkill", "30,2",  # as the OOM killer does
        lambda job_id, run: os.kill(int(run.data.tags["pid"]), signal.SIGKILL))
    assert error.startswith("LostJob: Slurm job") and "ended without a result" in error, error
    assert job_errors == [error], job_errors
