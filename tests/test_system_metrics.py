"""What a training run records besides its metrics: system metrics (tracking.system_metrics) and, when added, TensorBoard logs."""

from __future__ import annotations

import mlflow
import pytest


@pytest.mark.parametrize("enabled", [True, False])
@pytest.mark.slow
def test_a_training_run_records_system_metrics_unless_switched_off(tiny_cfg, tmp_path, monkeypatch, enabled):
    from melanoma_lab.study.experiment import run_experiment
    from melanoma_lab.tracking.store import tracking_uri

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    run_experiment(tiny_cfg("experiment=m1", "tracking.log_model=false", f"tracking.system_metrics={enabled}"),
                   tmp_path / "run")
    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    (run,) = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])
    system = {key for key in run.data.metrics if key.startswith("system/")}
    if enabled:
        assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= system
    else:
        assert not system


@pytest.mark.slow
def test_the_optional_tensorboard_callback_attaches_its_logs_to_the_run(tiny_cfg, tmp_path):
    from melanoma_lab.study.experiment import run_experiment
    from melanoma_lab.tracking.store import tracking_uri

    run_experiment(tiny_cfg("experiment=m1", "tracking.log_model=false", "tracking.system_metrics=false",
                            "+callbacks.tensorboard._target_=melanoma_lab.components.callbacks.tensorboard"), tmp_path / "run")
    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    (run,) = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])
    logged = [a.path for a in client.list_artifacts(run.info.run_id, "tensorboard/train")]
    assert any("events.out.tfevents" in path for path in logged)
