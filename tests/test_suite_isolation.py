"""The suite's own isolation (issue 23): the store one test points MLflow at does not reach a later test's
fixtures, whatever their scope (a module fixture is set up before the test's own autouse fixtures run)."""

import os

import mlflow
import pytest


@pytest.fixture(scope="module")
def tracking_at_module_setup():
    return os.environ.get("MLFLOW_TRACKING_URI"), mlflow.get_tracking_uri()


def test_a_test_points_mlflow_at_a_store_of_its_own(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'own.db'}")  # as trained_model and in-process commands do
    assert os.environ["MLFLOW_TRACKING_URI"].endswith("own.db")  # MLflow also sets the variable


@pytest.fixture
def fluent_store(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'fixture.db'}")  # as trained_model does


def test_a_test_deletes_the_variable_its_fixture_set(fluent_store, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # monkeypatch puts it back at teardown
    assert "MLFLOW_TRACKING_URI" not in os.environ


def test_a_later_module_fixture_sees_no_store_left_behind(tracking_at_module_setup):
    variable, fluent = tracking_at_module_setup
    assert variable is None
    assert not fluent.endswith(("own.db", "fixture.db"))


def test_a_copied_store_records_only_its_own_paths_and_leaves_the_source_alone(_trained_store, tmp_path):
    import sqlite3

    from melanoma_lab.tracking.store import tracking_uri
    from tests.conftest import copy_store

    _, source = _trained_store
    before = sorted(p.relative_to(source) for p in source.rglob("*"))
    copy = copy_store(source, tmp_path / "mlruns")
    with sqlite3.connect(copy / "mlflow.db") as db:
        dump = "\n".join(db.iterdump())
    assert str(copy) in dump and str(source) not in dump
    client = mlflow.tracking.MlflowClient(tracking_uri(None, copy))
    (run,) = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])
    experiment = client.get_experiment_by_name("melanoma-study")
    assert experiment.artifact_location.startswith(copy.as_uri())
    mlflow.set_tracking_uri(tracking_uri(None, copy))
    (model,) = mlflow.search_logged_models(experiment_ids=[experiment.experiment_id], output_format="list")
    assert model.artifact_location.startswith(copy.as_uri()) and model.source_run_id == run.info.run_id
    client.log_artifact(run.info.run_id, __file__)  # a write to the copy ...
    assert sorted(p.relative_to(source) for p in source.rglob("*")) == before  # ... is not a write to the source


def test_a_test_that_sets_mixed_precision_leaves_float32_behind_1():
    import keras

    keras.mixed_precision.set_global_policy("mixed_bfloat16")  # as compile_model does with trainer.precision=auto


def test_a_test_that_sets_mixed_precision_leaves_float32_behind_2():
    import keras

    assert keras.mixed_precision.global_policy().name == "float32"
