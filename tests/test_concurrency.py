"""Several processes writing one local MLflow store at once lose no run, param or metric."""

import subprocess
import sys

import mlflow
import pytest
import yaml

from melanoma_lab.tracking.store import tracking_uri
from melanoma_lab.tracking.run import flatten
from tests.conftest import TINY

pytestmark = pytest.mark.slow

QUIET = ["tracking.log_model=false", "trainer.epochs=2"]


def _runs(root):
    client = mlflow.tracking.MlflowClient(tracking_uri(None, root / "mlruns"))
    experiment = client.get_experiment_by_name("melanoma-study")
    return client, client.search_runs([experiment.experiment_id])


def test_two_processes_training_into_one_store(tmp_path):
    common = [sys.executable, "-m", "melanoma_lab", *TINY, *QUIET, f"paths.root_dir={tmp_path}"]
    jobs = [subprocess.Popen(common + [f"experiment={name}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for name in ("m1", "m2")]
    for job in jobs:
        _, err = job.communicate(timeout=300)
        assert job.returncode == 0, err[-2000:]
    client, runs = _runs(tmp_path)
    assert sorted(r.data.tags["experiment"] for r in runs) == ["m1", "m2"]
    for run in runs:  # every param of the run's own composed config arrived (m1 and m2 have different groups)
        assert run.info.status == "FINISHED"
        logged = yaml.safe_load(open(client.download_artifacts(run.info.run_id, "config/config.yaml")))
        assert set(run.data.params) == set(flatten(logged)) and len(run.data.params) > 50
        assert len(client.get_metric_history(run.info.run_id, "val_loss")) == 2


def test_parallel_joblib_sweep_loses_nothing(tmp_path):
    result = subprocess.run([sys.executable, "-m", "melanoma_lab", "--multirun", "hydra/launcher=joblib",
                             "hydra.launcher.n_jobs=2", "experiment=m1,m2", "trainer.seed=1,2", *TINY, *QUIET,
                             f"paths.root_dir={tmp_path}"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    client, runs = _runs(tmp_path)
    [parent] = [r for r in runs if r.data.tags.get("kind") == "sweep"]
    assert parent.info.status == "FINISHED" and parent.data.metrics == {"jobs": 4, "failed_jobs": 0}
    runs = [r for r in runs if r is not parent]
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in runs)
    assert sorted((r.data.tags["experiment"], r.data.tags["seed"]) for r in runs) == [
        ("m1", "1"), ("m1", "2"), ("m2", "1"), ("m2", "2")]
    for run in runs:
        logged = yaml.safe_load(open(client.download_artifacts(run.info.run_id, "config/config.yaml")))
        assert run.info.status == "FINISHED" and set(run.data.params) == set(flatten(logged))
        assert len(client.get_metric_history(run.info.run_id, "val_loss")) == 2
        assert "val_balanced_accuracy" in run.data.metrics
