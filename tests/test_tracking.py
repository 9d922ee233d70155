import os
from contextlib import nullcontext

import mlflow
import pytest

from melanoma_lab.tracking.store import tracking_uri
from melanoma_lab.tracking.run import RunTracker, flatten


def test_flatten_nested_config_for_params():
    flat = flatten({"model": {"filters": [16, 32], "head": "flatten"}, "name": "m1", "x": {"y": {"z": None}}})
    assert flat == {"model.filters": "[16, 32]", "model.head": "flatten", "name": "m1", "x.y.z": "None"}
    assert len(flatten({"long": "a" * 9000})["long"]) == 6000


def test_store_defaults_to_absolute_sqlite_in_mlruns(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert tracking_uri(None, "mlruns") == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking_uri(None, "mlruns") == "http://127.0.0.1:5999"


@pytest.mark.parametrize("error,status", [(RuntimeError("boom"), "FAILED"), (KeyboardInterrupt(), "KILLED"),
                                          (None, "FINISHED")])
def test_run_ends_with_a_truthful_status(tmp_path, error, status):
    uri = tracking_uri(None, tmp_path / "mlruns")
    tracker = RunTracker(True, uri, "exp", "run", tmp_path / "mlruns")
    with pytest.raises(type(error)) if error else nullcontext():
        with tracker:
            tracker.log_metrics({"loss": 1.0}, step=0)
            if error:
                raise error
    run = mlflow.tracking.MlflowClient(uri).get_run(tracker.run_id)
    assert run.info.status == status
    assert run.data.metrics["loss"] == 1.0
    assert mlflow.active_run() is None


def test_disabled_tracking_writes_nothing(tmp_path):
    with RunTracker(False, "unused", "exp", "run", None) as tracker:
        tracker.log_metrics({"loss": 1.0})
    assert tracker.run_id is None and not (tmp_path / "mlruns").exists()



def test_a_closed_tracking_server_fails_fast_with_the_ways_out(tmp_path):
    from melanoma_lab.tracking.store import TrackingUnavailableError

    with pytest.raises(TrackingUnavailableError, match="tracking.enabled=false"):
        RunTracker(True, "http://127.0.0.1:9", "exp", "run", None)


def test_an_unwritable_store_is_refused_before_training(tmp_path):
    from melanoma_lab.tracking.store import TrackingUnavailableError

    (tmp_path / "file").write_text("x")
    with pytest.raises(TrackingUnavailableError, match="paths.mlruns_dir"):
        tracking_uri(None, tmp_path / "file" / "mlruns")


def test_an_interrupt_during_a_store_write_waits_for_the_write():
    import os
    import signal

    from melanoma_lab.tracking import store
    finished = []

    def write_interrupted_halfway():
        os.kill(os.getpid(), signal.SIGINT)  # arrives in the middle of the "transaction"
        finished.append(True)
        return "written"

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C raises KeyboardInterrupt
    try:
        with pytest.raises(KeyboardInterrupt):
            store.retry_locked(write_interrupted_halfway)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert finished == [True]  # the write completed before the interrupt was delivered


def test_tracker_counts_the_seconds_spent_in_the_store_once(tmp_path, monkeypatch):
    """On a clock that only the test moves (a wall clock made this test fail beside a training): a timed call
    inside a timed call counts once, time outside the store not at all."""
    import time
    from types import SimpleNamespace

    from melanoma_lab.tracking import run as run_module

    clock = {"now": 0.0}
    monkeypatch.setattr(run_module, "time", SimpleNamespace(perf_counter=lambda: clock["now"], time=time.time))

    def sleep(seconds: float) -> None:
        clock["now"] += seconds

    tracker = RunTracker(True, tracking_uri(None, tmp_path / "mlruns"), "exp", "run", tmp_path / "mlruns")
    with tracker:
        before = tracker.seconds
        tracker.log_model(lambda: sleep(0.3))  # a timed call inside a timed call
        inside = tracker.seconds - before
        sleep(0.3)  # not tracking: not counted
    assert inside == pytest.approx(0.3)  # counted twice: 0.6
    assert tracker.seconds == pytest.approx(before + inside)
    assert RunTracker(False, "unused", "exp", "run", None).seconds < 0.01


def test_a_run_leaves_no_tracking_uri_behind_for_the_next_store(tmp_path, monkeypatch):
    """mlflow.set_tracking_uri sets MLFLOW_TRACKING_URI: after a run the next run of another store must not be
    written into the first one."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    first = tracking_uri(None, tmp_path / "first")
    with RunTracker(True, first, "exp", "one", tmp_path / "first"):
        pass
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert tracking_uri(None, tmp_path / "second") == f"sqlite:///{(tmp_path / 'second' / 'mlflow.db').resolve()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", first)  # a user's choice is kept
    with RunTracker(True, first, "exp", "two", tmp_path / "first"):
        pass
    assert os.environ["MLFLOW_TRACKING_URI"] == first


def test_a_run_that_cannot_start_leaves_the_tracking_uri_as_it_was(tmp_path, monkeypatch):
    import os

    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracker = RunTracker(True, tracking_uri(None, tmp_path / "mlruns"), "exp", "run", tmp_path / "mlruns")

    def refuse(*args, **kwargs):
        raise RuntimeError("store refused the run")

    monkeypatch.setattr(mlflow, "start_run", refuse)
    with pytest.raises(RuntimeError, match="refused"):
        with tracker:
            pass
    assert "MLFLOW_TRACKING_URI" not in os.environ  # a later run of another store is not written into this one


def test_the_ui_serves_the_store_that_the_conf_overrides_name(tmp_path, monkeypatch, capsys):
    """make ui used to serve ./mlruns whatever store training used; now it resolves paths.root_dir and
    tracking.tracking_uri like every command, and names a tracking server instead of hiding it."""
    import subprocess

    from melanoma_lab.cli import ui

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    served = []
    monkeypatch.setattr(subprocess, "run", lambda command: served.append(command) or subprocess.CompletedProcess(
        command, 0))
    assert ui.main(["--port", "5123", f"paths.root_dir={tmp_path}"]) == 0
    (command,) = served
    assert command[1:] == ["ui", "--backend-store-uri", f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}",
                           "--host", "127.0.0.1", "--port", "5123"]
    assert ui.main(["tracking.tracking_uri=http://127.0.0.1:5999"]) == 2
    assert "serves its own UI, open http://127.0.0.1:5999" in capsys.readouterr().err and len(served) == 1
