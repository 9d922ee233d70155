"""Runs left RUNNING by a process that is gone are marked FAILED at the next start, whatever their config."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap

import mlflow
import pytest

from melanoma_lab.tracking.identity import finished_twin, make_tracker
from melanoma_lab.tracking.store import tracking_uri
from melanoma_lab.tracking.run import RunTracker

def killed_run(uri: str) -> str:
    """A process that opens a run (another MLflow experiment, another config; tagged with its host and pid as
    RunTracker does) and is SIGKILLed: its run id."""
    script = textwrap.dedent(f"""
        import os, socket, time
        from mlflow.tracking import MlflowClient
        client = MlflowClient({uri!r})
        run = client.create_run(client.create_experiment("another-study"), run_name="other",
                                tags={{"config_hash": "another-config", "host": socket.gethostname(),
                                      "pid": str(os.getpid())}})
        print(run.info.run_id, flush=True)
        time.sleep(600)
        """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        run_id = process.stdout.readline().strip()
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    return run_id


def test_a_killed_run_of_another_config_is_failed_when_any_run_starts(tiny_cfg, tmp_path):
    cfg = tiny_cfg()
    uri = tracking_uri(None, tmp_path / "mlruns")
    killed = killed_run(uri)
    client = mlflow.tracking.MlflowClient(uri)
    assert client.get_run(killed).info.status == "RUNNING"
    live = client.create_run(client.get_experiment_by_name("another-study").experiment_id,
                             tags={"host": socket.gethostname(), "pid": str(os.getpid())})
    elsewhere = client.create_run(client.get_experiment_by_name("another-study").experiment_id,
                                  tags={"host": "another-host", "pid": "999999999"})

    identity = {"config_hash": "this-config", "data_fingerprint": "x"}
    tracker = make_tracker(cfg.tracking, cfg.paths.mlruns_dir, "m1", identity)
    assert finished_twin(tracker, identity, cfg.tracking.skip_finished) is None  # how every start begins

    repaired = client.get_run(killed)
    assert repaired.info.status == "FAILED" and repaired.data.tags["error"].startswith("stale: process")
    assert client.get_run(live.info.run_id).info.status == "RUNNING"  # its process (this one) is alive
    assert client.get_run(elsewhere.info.run_id).info.status == "RUNNING"  # another host's: cannot be judged


def test_a_reused_pid_or_another_container_is_not_taken_for_the_runs_process(tmp_path):
    from melanoma_lab.tracking.processes import start_time
    from melanoma_lab.tracking.stale_runs import find_stale_runs

    uri = tracking_uri(None, tmp_path / "mlruns")
    with RunTracker(True, uri, "exp", "live", None) as live:
        client = mlflow.tracking.MlflowClient(uri)
        assert client.get_run(live.run_id).data.tags["pid_started"] == start_time(os.getpid())
        # this pid is alive, but the process that started the run began at another time: the pid was reused
        reused = client.create_run(live.experiment_id, tags={"host": socket.gethostname(), "pid": str(os.getpid()),
                                                             "pid_started": "1"})
        assert [run.info.run_id for run in find_stale_runs(client)] == [reused.info.run_id]
        # a dead pid of another container with the same hostname: invisible from here, so not judged
        client.create_run(live.experiment_id, tags={"host": socket.gethostname(), "pid": "999999999",
                                                    "pid_namespace": "pid:[1]"})
        assert [run.info.run_id for run in find_stale_runs(client)] == [reused.info.run_id]


def test_the_command_lists_then_repairs_stale_runs(tmp_path, capsys):
    from melanoma_lab.cli.stale_runs import main

    uri = tracking_uri(None, tmp_path / "mlruns")
    client = mlflow.tracking.MlflowClient(uri)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = client.create_run(client.create_experiment("exp"), run_name="orphan",
                               tags={"host": socket.gethostname(), "pid": dead.stdout.strip()})

    assert main([f"tracking.tracking_uri={uri}"]) == 0
    listed = capsys.readouterr().out
    assert f"{orphan.info.run_id}  exp/orphan" in listed and "1 run(s)" in listed
    assert client.get_run(orphan.info.run_id).info.status == "RUNNING"  # listing changes nothing

    assert main([f"tracking.tracking_uri={uri}", "--repair"]) == 0
    assert "1 run(s) of host" in capsys.readouterr().out
    assert client.get_run(orphan.info.run_id).info.status == "FAILED"
    main([f"tracking.tracking_uri={uri}"])
    assert "0 run(s)" in capsys.readouterr().out


def test_runs_record_the_slurm_job_that_scancel_names(monkeypatch):
    from melanoma_lab.tracking.processes import owner_tags

    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    assert "slurm_job_id" not in owner_tags()
    monkeypatch.setenv("SLURM_JOB_ID", "41")
    assert owner_tags()["slurm_job_id"] == "41"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "40")  # a task of job array 40: its own id may be 40 (every task)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    assert owner_tags()["slurm_job_id"] == "40_1"


def test_the_command_finds_the_store_that_the_conf_overrides_name(tmp_path, monkeypatch, capsys):
    from melanoma_lab.cli.stale_runs import main

    root = tmp_path / "lab"  # runs logged with paths.root_dir=<root>
    uri = tracking_uri(None, root / "mlruns")
    client = mlflow.tracking.MlflowClient(uri)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = client.create_run(client.create_experiment("exp"), run_name="orphan",
                               tags={"host": socket.gethostname(), "pid": dead.stdout.strip()}).info.run_id
    monkeypatch.chdir(tmp_path)  # the default store, ./mlruns, is another (empty) one here
    for store in ([], ["paths.root_dir=lab"], [f"paths.root_dir={root}"], [f"paths.mlruns_dir={root / 'mlruns'}"],
                  [f"tracking.tracking_uri={uri}"], ["--tracking-uri", uri]):
        assert main(store) == 0
        assert ("1 run(s)" if store else "0 run(s)") in capsys.readouterr().out, store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # as for training, the variable names the store first
    assert main([]) == 0 and f"{orphan}  exp/orphan" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit:
        main(["paths.no_such_key=1"])
    assert exit.value.code == 2 and "paths.no_such_key" in capsys.readouterr().err


def test_a_finished_run_from_other_weights_under_the_same_path_is_not_reused(tiny_cfg, tmp_path):
    """model.weights is a path in the config: the identity holds the file's content hash, so new weights written
    over the old file train again instead of reusing the old run's numbers."""
    from melanoma_lab.data.sources import load_catalog
    from omegaconf import OmegaConf

    from melanoma_lab.tracking.identity import run_identity
    from tests.conftest import TINY_DATA, compose_config

    weights = tmp_path / "backbone.weights.h5"
    weights.write_bytes(b"first weights")
    cfg = compose_config([*TINY_DATA, "model=transfer", f"model.weights={weights}"], root=tmp_path)
    files = load_catalog(cfg.dataset).files
    identity = run_identity(OmegaConf.to_container(cfg, resolve=True), files)
    with make_tracker(cfg.tracking, cfg.paths.mlruns_dir, "transfer", identity) as tracker:
        tracker.log_metrics({"val_accuracy": 0.5})
    tracker = make_tracker(cfg.tracking, cfg.paths.mlruns_dir, "transfer", identity)
    assert finished_twin(tracker, identity, cfg.tracking.skip_finished) == {"val_accuracy": 0.5}

    weights.write_bytes(b"other weights, same path")
    again = run_identity(OmegaConf.to_container(cfg, resolve=True), files)
    assert again["config_hash"] == identity["config_hash"]  # the config did not change, the input did
    tracker = make_tracker(cfg.tracking, cfg.paths.mlruns_dir, "transfer", again)
    assert finished_twin(tracker, again, cfg.tracking.skip_finished) is None
    unweighted = OmegaConf.to_container(compose_config([*TINY_DATA, "model=transfer"]), resolve=True)
    assert "model_weights_sha256" not in run_identity(unweighted, files)
