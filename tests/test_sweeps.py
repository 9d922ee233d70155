"""Hydra sweeps: one MLflow parent run per sweep, jobs as children, a failing job does not stop the others."""

import json
import subprocess
import sys
import textwrap

import mlflow
import pandas as pd
import pytest

from melanoma_lab.study.sweep import summary_table
from melanoma_lab.tracking.store import tracking_uri
from tests.conftest import TINY


def _run(name, status, overrides, bacc, start):
    return mlflow.entities.Run(
        mlflow.entities.RunInfo(name, "0", "", status, start, None, "active", run_name=name),
        mlflow.entities.RunData(metrics=[mlflow.entities.Metric("val_balanced_accuracy", bacc, 0, 0)],
                                tags=[mlflow.entities.RunTag("overrides", overrides)]))


def test_summary_keeps_the_newest_child_of_each_job():
    children = [_run("b2", "FINISHED", "seed=2", 0.6, 3), _run("a2", "FINISHED", "seed=1", 0.5, 2),
                _run("a1", "FAILED", "seed=1", 0.1, 1)]  # newest first, as child_runs() returns them
    table = summary_table(children, ("val_balanced_accuracy", "test_balanced_accuracy"))
    assert list(table["run_name"]) == ["b2", "a2"] and list(table["status"]) == ["FINISHED", "FINISHED"]
    assert list(table["val_balanced_accuracy"]) == [0.6, 0.5] and table["test_balanced_accuracy"].isna().all()


@pytest.mark.slow
def test_the_sweep_callback_opens_and_closes_the_parent_run_without_tensorflow(tmp_path):
    # the launcher process of a Ray or Slurm sweep never trains: its parent run must not load TensorFlow
    script = textwrap.dedent(f"""
        import json, sys
        from hydra import compose, initialize_config_dir
        from melanoma_lab.config.compose import CONF_DIR
        from melanoma_lab.config.schema import register_configs
        from melanoma_lab.study.sweep import MlflowSweepCallback
        register_configs()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=["paths.root_dir={tmp_path}", "hydra.sweep.dir={tmp_path}/sweep"],
                          return_hydra_config=True)
        MlflowSweepCallback().on_multirun_start(cfg)
        MlflowSweepCallback().on_multirun_end(cfg)
        print(json.dumps(sorted(name for name in ("tensorflow", "keras") if name in sys.modules)))
        """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    [parent] = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id], "tags.kind = 'sweep'")
    assert parent.info.status == "FINISHED" and parent.data.metrics["jobs"] == 0


def _sweep(root, *swept):
    return subprocess.run([sys.executable, "-m", "melanoma_lab", "--multirun", *swept, *TINY,
                           "tracking.log_model=false", f"paths.root_dir={root}"],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_jobs_failing_before_their_run_starts_fail_the_sweep_without_traceback(tmp_path):
    result = _sweep(tmp_path, "experiment=m2", "augmentation.flip.mode=diagonal,horizontal",
                    "dataset.root=/nonexistent")
    assert result.returncode == 1 and "2 of 2 sweep jobs failed (experiment=m2 augmentation.flip.mode=diagonal" in result.stderr
    assert result.stdout.count("sweep job 0 failed: invalid config: augmentation.flip.mode='diagonal'") == 1
    assert result.stdout.count("sweep job 1 failed: No dataset found at /nonexistent") == 1
    assert "Traceback" not in result.stdout + result.stderr
    [summary] = (tmp_path / "experiments" / "multiruns").glob("*/sweep_summary.csv")
    assert list(pd.read_csv(summary)["status"]) == ["FAILED", "FAILED"]


@pytest.mark.slow
def test_sweep_is_a_parent_run_whose_children_are_the_jobs(tmp_path):
    # a Keras layer argument is checked when the layer is built, inside the job's run
    result = _sweep(tmp_path, "experiment=m2", "augmentation.rotation.factor=0.1,2")
    assert result.returncode != 0 and "1 of 2 sweep jobs failed (experiment=m2 augmentation.rotation.factor=2" in result.stderr
    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    experiment_id = client.get_experiment_by_name("melanoma-study").experiment_id
    [parent] = client.search_runs([experiment_id], "tags.kind = 'sweep'")
    children = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    statuses = {r.data.tags["override.augmentation.rotation.factor"]: r for r in children}
    assert statuses["0.1"].info.status == "FINISHED" and "val_balanced_accuracy" in statuses["0.1"].data.metrics
    assert statuses["2"].info.status == "FAILED" and "augmentation.rotation" in statuses["2"].data.tags["error"]
    assert parent.info.status == "FAILED" and parent.data.metrics["failed_jobs"] == 1
    table = pd.read_csv(client.download_artifacts(parent.info.run_id, "sweep_summary.csv"))
    assert sorted(table["status"]) == ["FAILED", "FINISHED"]
    assert table["val_balanced_accuracy"].notna().sum() == 1

    again = _sweep(tmp_path, "experiment=m2", "augmentation.rotation.factor=0.1,2")  # the same sweep: one parent, reopened
    assert again.returncode != 0 and "reusing run" in again.stdout + again.stderr
    [reopened] = client.search_runs([experiment_id], "tags.kind = 'sweep'")
    children = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert reopened.info.run_id == parent.info.run_id and reopened.data.tags["resumed"] == "true"
    assert sorted(r.info.status for r in children) == ["FAILED", "FAILED", "FINISHED"]  # FINISHED job skipped
    table = pd.read_csv(client.download_artifacts(parent.info.run_id, "sweep_summary.csv"))
    assert len(table) == 2


def test_the_sweep_ends_with_its_runs_side_by_side_read_from_mlflow(tmp_path):
    from melanoma_lab.study.sweep_table import runs_table, sweep_report, ui_link

    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    experiment_id = client.create_experiment("demo", artifact_location=str(tmp_path / "artifacts"))
    parent = client.create_run(experiment_id, run_name="sweep").info.run_id
    ids = {}
    for name, val, test, auc in (("m1", 0.45, 0.54, 0.986), ("m2", 0.5, None, 0.9)):
        run = client.create_run(experiment_id, run_name=name, tags={"mlflow.parentRunId": parent, "experiment": name,
                                                                    "overrides": f"experiment={name}"})
        ids[name] = run.info.run_id
        for key, value in (("val_balanced_accuracy", val), ("test_balanced_accuracy", test),
                           ("val_melanoma_roc_auc", auc)):
            if value is not None:
                client.log_metric(run.info.run_id, key, value)
        client.set_terminated(run.info.run_id)
    children = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent}'")
    lines = runs_table(summary_table(children, ("val_balanced_accuracy", "test_balanced_accuracy",
                                                "val_melanoma_roc_auc", "test_melanoma_roc_auc"))).splitlines()
    assert lines[0].split() == ["experiment", "run", "id", "status", "val", "bacc", "test", "bacc", "val", "mel", "AUC",
                                "test", "mel", "AUC"]
    assert sorted(line.split() for line in lines[1:]) == [["m1", ids["m1"], "FINISHED", "0.4500", "0.5400", "0.9860", "-"],
                                                         ["m2", ids["m2"], "FINISHED", "0.5000", "-", "0.9000", "-"]]
    local = ui_link("sqlite:///x.db", experiment_id, parent, ["experiment=m1,m2", f"paths.root_dir={tmp_path}"])
    assert local == (f"melanoma-lab ui paths.root_dir={tmp_path}  ->  "
                     f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{parent}")
    assert ui_link("http://host:5001/", "3", "abc", []) == "http://host:5001/#/experiments/3/runs/abc"
    report = sweep_report(summary_table(children, ()), parent, local)
    assert f"sweep {parent}: 2 runs" in report and report.endswith(f"MLflow UI: {local}")
