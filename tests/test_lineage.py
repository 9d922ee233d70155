"""Dataset lineage: every run logs the images it trained, validated and was scored on as MLflow dataset inputs."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest

from melanoma_lab.data.catalog import fingerprint
from melanoma_lab.tracking.lineage import CONTEXT_TAG, digest


def _inputs(run):
    return {next(t.value for t in i.tags if t.key == CONTEXT_TAG): i.dataset for i in run.inputs.dataset_inputs}


def test_a_run_logs_its_training_validation_and_test_images_with_their_fingerprints(trained_model):
    from melanoma_lab.tracking.store import tracking_uri

    _, source, catalog, store = trained_model
    client = mlflow.tracking.MlflowClient(tracking_uri(None, store))
    run = client.get_run(source.info.run_id)
    inputs = _inputs(run)
    assert set(inputs) == {"training", "validation", "test"}
    metrics = run.data.metrics  # the headline numbers also under headline/ (grouped in the MLflow UI)
    assert metrics["headline/val_balanced_accuracy"] == metrics["val_balanced_accuracy"]
    assert metrics["headline/test_clean_balanced_accuracy"] == metrics["test_clean_balanced_accuracy"]
    assert inputs["training"].name.endswith("-training") and inputs["test"].name.endswith("-test")
    with_rows = client.download_artifacts(run.info.run_id, "evaluation/test_predictions.csv")
    tested = pd.read_csv(with_rows)
    assert '"num_rows": %d' % len(tested) in inputs["test"].profile
    assert all(len(d.digest) == 16 for d in inputs.values()) and len({d.digest for d in inputs.values()}) == 3
    root = str(pd.Series(catalog.files["path"]).map(lambda p: p.split("/Train/")[0].split("/Test/")[0]).iloc[0])
    assert all(root in d.source for d in inputs.values())  # one source: the folder above Train/ and Test/


def test_the_digest_is_the_data_fingerprint_and_generated_images_still_get_one():
    files = pd.DataFrame({"path": ["/d/Train/a/1.jpg", "/d/Train/b/2.jpg"], "label": ["a", "b"],
                          "split": ["train", "train"], "sha256": ["x" * 64, "y" * 64]})
    assert digest(files) == fingerprint(files)
    generated = files.drop(columns=["sha256", "split"])
    assert len(digest(generated)) == 16 and digest(generated) != digest(generated.iloc[:1])


@pytest.mark.slow
def test_a_nested_fold_logs_its_outer_fold_as_held_out(tiny_cfg, tmp_path):
    from melanoma_lab.study.crossval import run_cross_validation
    from melanoma_lab.tracking.store import tracking_uri

    run_cross_validation(tiny_cfg("study.cv_folds=2", "study.cv_run_folds=[1]", "study.shift_check=false",
                                  "tracking.log_model=false"), tmp_path / "cv")
    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    runs = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])
    (fold,) = [r for r in runs if "fold" in r.data.tags]
    inputs = _inputs(fold)
    assert {"training", "validation", "held_out"} <= set(inputs)
    assert inputs["held_out"].source == inputs["training"].source


def test_two_runs_storing_the_same_dataset_at_once_both_log_it(tmp_path, monkeypatch):
    """MLflow looks a dataset up, then inserts it: two sweep jobs logging the same split at the same moment race,
    and the loser's insert breaks the unique key (seen with PostgreSQL in the Slurm sweep). Its retry finds it."""
    from mlflow.exceptions import MlflowException

    from melanoma_lab.tracking import lineage

    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.create_run(client.create_experiment("e", artifact_location=(tmp_path / "a").as_uri()))
    real, calls = client.log_inputs, []

    def racing(run_id, datasets=None, models=None):
        calls.append(run_id)
        if len(calls) == 1:
            raise MlflowException('(psycopg2.errors.UniqueViolation) duplicate key value violates unique constraint '
                                  '"dataset_pk"')
        return real(run_id, datasets=datasets)

    monkeypatch.setattr(client, "log_inputs", racing)
    files = pd.DataFrame({"path": [str(tmp_path / "Train" / "a.jpg")], "label": ["a"], "split": ["train"],
                          "sha256": ["x" * 64]})
    lineage.log_inputs(client, run.info.run_id, {"training": files}, "d")
    assert len(calls) == 2 and _inputs(client.get_run(run.info.run_id))["training"].name == "d-training"
    monkeypatch.setattr(client, "log_inputs", lambda *a, **k: (_ for _ in ()).throw(MlflowException("disk full")))
    with pytest.raises(MlflowException, match="disk full"):  # anything else is not retried
        lineage.log_inputs(client, run.info.run_id, {"training": files}, "d")
