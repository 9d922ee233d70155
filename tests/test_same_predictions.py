"""One prediction path: ``predict`` and the served pyfunc reproduce a run's evaluation, and a model whose
validation held no melanoma has no alert anywhere (issue 13, points 4 and 5)."""

import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest


from melanoma_lab.cli import predict as predict_command


from melanoma_lab.cli import promote as promote_command
from melanoma_lab.data.sources import load_catalog
from melanoma_lab.study.experiment import run_experiment
from melanoma_lab.serving.classifier import encode_image
from melanoma_lab.tracking.store import tracking_uri


def _only_run(store: Path):
    client = mlflow.tracking.MlflowClient(tracking_uri(None, store))
    (run,) = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])
    mlflow.set_tracking_uri(tracking_uri(None, store))
    return client, run


def _predict_json(args: list[str], capsys) -> tuple[int, dict]:
    code = predict_command.main(args + ["--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("views, extra", [("flip", ()), ("dihedral", ("dataset.colour_constancy_power=6",))])
@pytest.mark.slow
def test_predict_and_served_model_reproduce_the_runs_test_predictions(tiny_cfg, tmp_path, capsys, views, extra):
    cfg = tiny_cfg(f"evaluation.tta={views}", *extra)
    run_experiment(cfg, tmp_path / "run")
    client, run = _only_run(tmp_path / "mlruns")
    uri, store = f"runs:/{run.info.run_id}/model", tracking_uri(None, tmp_path / "mlruns")
    classes = load_catalog(cfg.dataset).classes
    expected = pd.read_csv(client.download_artifacts(run.info.run_id, "evaluation/test_predictions.csv", tmp_path))
    expected = expected.set_index("path")[[f"p_{c}" for c in classes]].set_axis(classes, axis=1)
    threshold = run.data.metrics["val_melanoma_alert_threshold"]
    test_folder = load_catalog(cfg.dataset).root / "Test"

    code, payload = _predict_json([str(test_folder), "--model", uri, f"tracking.tracking_uri={store}"], capsys)
    assert code == 0 and payload["threshold"] == threshold
    predicted = pd.DataFrame({p["path"]: p["probabilities"] for p in payload["predictions"]}).T[classes]
    assert sorted(predicted.index) == sorted(expected.index)
    predicted = predicted.loc[expected.index]
    assert np.abs(predicted.to_numpy() - expected.to_numpy()).max() <= 1e-4  # main: TTA left out, ~1e-2 apart
    alerts = {p["path"]: p["alert"] for p in payload["predictions"]}
    assert [alerts[path] for path in expected.index] == list(expected["melanoma"] >= threshold)
    assert payload["tta"] == views

    served = mlflow.pyfunc.load_model(uri)
    table = served.predict(pd.DataFrame({"image": [encode_image(path) for path in expected.index]}))
    assert np.abs(table[classes].to_numpy() - expected.to_numpy()).max() <= 1e-4
    assert list(table["melanoma_alert"]) == list(expected["melanoma"] >= threshold)
    assert served.metadata.metadata["tta"] == views and served.metadata.metadata["image_size"] == 32
    assert served.metadata.metadata["colour_constancy_power"] == (6 if extra else None)


@pytest.mark.slow
def test_no_melanoma_in_validation_means_no_alert_anywhere(tiny_cfg, tmp_path, capsys):
    synthetic = load_catalog(tiny_cfg().dataset).root
    root = tmp_path / "data"
    shutil.copytree(synthetic, root)
    for image in (root / "Train" / "melanoma").iterdir():  # melanoma only in Test
        image.unlink()
    results = run_experiment(tiny_cfg(f"dataset.root={root}", "imbalance=none"), tmp_path / "run")
    # main chose the Test alert threshold on the Test labels themselves
    assert not {k for k in results if "alert" in k}
    client, run = _only_run(tmp_path / "mlruns")
    assert run.data.tags["melanoma_alert_status"] == "no_melanoma_in_validation"
    # melanoma is absent from validation: not scored (NaN, not logged), not averaged, and counted
    assert np.isnan(results["val_recall_melanoma"]) and "val_recall_melanoma" not in run.data.metrics
    assert (run.data.metrics["val_classes_scored"], run.data.metrics["test_classes_scored"]) == (8, 9)
    per_class = pd.read_csv(client.download_artifacts(run.info.run_id, "evaluation/val_per_class.csv", tmp_path))
    assert per_class.set_index("class").loc["melanoma", ["recall", "f1"]].isna().all()
    assert "validation holds no melanoma" in run.data.tags["melanoma_alert_note"]
    uri, store = f"runs:/{run.info.run_id}/model", tracking_uri(None, tmp_path / "mlruns")
    served = mlflow.pyfunc.load_model(uri)
    assert served.metadata.metadata["melanoma_alert_threshold"] is None
    images = sorted((root / "Test" / "melanoma").iterdir())[:3]

    code, payload = _predict_json([str(p) for p in images] + ["--model", uri, f"tracking.tracking_uri={store}"], capsys)
    assert code == 0 and payload["threshold"] is None and "no calibrated melanoma alert" in payload["alert_note"]
    assert [p["alert"] for p in payload["predictions"]] == [None] * 3
    assert predict_command.main([str(images[0]), "--model", uri, f"tracking.tracking_uri={store}"]) == 0
    out = capsys.readouterr().out
    assert "note: this model has no calibrated melanoma alert" in out and "MELANOMA ALERT" not in out

    table = served.predict(pd.DataFrame({"image": [encode_image(p) for p in images]}))
    assert table["melanoma_alert"].isna().all() and table["alert_note"].str.contains("validation holds no").all()

    assert promote_command.main(["--run", run.info.run_id, f"tracking.tracking_uri={store}"]) == 0
    version = mlflow.tracking.MlflowClient(store).get_model_version_by_alias("melanoma-classifier", "champion")
    assert version.tags["threshold_chosen_on"].startswith("none: this model has no calibrated melanoma alert")
