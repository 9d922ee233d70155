"""Fold ensembles as one model (issue 15): the average of a cross-validation's fold models, logged on the CV
parent with the single-run pyfunc interface, its alert threshold chosen out of fold; predict, serve and promote
use it unchanged."""

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score


from melanoma_lab.cli import predict as predict_command

from melanoma_lab.serving import promote

from melanoma_lab.cli import promote as promote_command
from melanoma_lab.config.schema import ConfigError
from melanoma_lab.study.crossval import run_cross_validation
from melanoma_lab.data.pipeline import load_image
from melanoma_lab.data.sources import load_catalog
from melanoma_lab.evaluation.metrics import threshold_for_sensitivity
from melanoma_lab.evaluation.gradcam import grad_cam
from melanoma_lab.evaluation.inference import predict_probabilities
from melanoma_lab.serving.classifier import encode_image
from melanoma_lab.tracking.store import tracking_uri


@pytest.mark.parametrize("extra", [("tracking.log_model=false",), ("tracking.enabled=false",), ("study.cv_folds=1",)])
def test_an_ensemble_that_cannot_be_logged_is_refused_before_any_fold_trains(tiny_cfg, tmp_path, extra):
    cfg = tiny_cfg("study.cv_folds=2", "study.ensemble=true", *extra)
    with pytest.raises(ConfigError, match="study.ensemble"):
        run_cross_validation(cfg, tmp_path / "cv")
    assert not (tmp_path / "cv").exists()


@pytest.mark.slow
def test_the_fold_ensemble_is_one_model_that_predict_serve_and_promote_use_unchanged(tiny_cfg, tmp_path, capsys):
    cfg = tiny_cfg("experiment=m1", "study.cv_folds=2", "study.ensemble=true", "imbalance=none",
                   "evaluation.tta=dihedral", "study.calibration_fraction=0")  # the slice: test_ensemble_calibration
    summary = run_cross_validation(cfg, tmp_path / "cv")
    store = tracking_uri(None, tmp_path / "mlruns")
    client = mlflow.tracking.MlflowClient(store)
    mlflow.set_tracking_uri(store)
    runs = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r is not parent]
    catalog = load_catalog(cfg.dataset)
    classes, mel = catalog.classes, catalog.classes.index("melanoma")
    uri = f"runs:/{parent.info.run_id}/model"

    # without a calibration slice the alert threshold is chosen on the out-of-fold predictions (never on Test)
    oof = pd.read_csv(client.download_artifacts(parent.info.run_id, "oof_predictions.csv", tmp_path))
    threshold = threshold_for_sensitivity(oof["label"].to_numpy() == mel, oof["p_melanoma"].to_numpy(),
                                          cfg.evaluation.fixed_sensitivity)
    served = mlflow.pyfunc.load_model(uri)
    metadata = served.metadata.metadata
    assert metadata["melanoma_alert_threshold"] == pytest.approx(threshold)
    assert (metadata["ensemble_folds"], metadata["tta"], metadata["alert_threshold_source"]) == (
        2, "dihedral", "member_out_of_fold")
    assert metadata["alert_threshold_chosen_on"].startswith("out-of-fold predictions of the individual fold models")
    assert metadata["input_check"] in [mlflow.models.get_model_info(f"runs:/{r.info.run_id}/model").metadata[
        "input_check"] for r in children]  # a fold's input check (it depends on no network)

    # it is the mean of the fold models' probabilities
    test_paths = sorted(catalog.split("test")["path"])[:6]
    images = np.stack([load_image(p, 32) for p in test_paths])
    folds = [mlflow.pyfunc.load_model(f"runs:/{r.info.run_id}/model").unwrap_python_model().model for r in children]
    expected = np.mean([predict_probabilities(m, images, 16, "dihedral") for m in folds], axis=0)
    ensemble = served.unwrap_python_model().model
    assert np.abs(predict_probabilities(ensemble, images, 16, "dihedral") - expected).max() <= 1e-5

    # Test is scored by the ensemble, and predict reproduces it from the logged model
    scored = pd.read_csv(client.download_artifacts(parent.info.run_id,
                                                   "evaluation/ensemble_test_predictions.csv", tmp_path))
    probabilities = scored[[f"p_{c}" for c in classes]].to_numpy()
    assert summary["ensemble_test_balanced_accuracy"] == pytest.approx(
        balanced_accuracy_score(scored["label"], probabilities.argmax(1)))
    assert parent.data.metrics["ensemble_test_melanoma_alert_threshold"] == pytest.approx(threshold)
    code = predict_command.main([str(catalog.root / "Test"), "--model", uri, f"tracking.tracking_uri={store}", "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 0 and payload["threshold"] == pytest.approx(threshold) and payload["tta"] == "dihedral"
    predicted = pd.DataFrame({p["path"]: p["probabilities"] for p in payload["predictions"]}).T[classes]
    assert np.abs(predicted.loc[scored["path"]].to_numpy() - probabilities).max() <= 1e-4
    alerts = {p["path"]: p["alert"] for p in payload["predictions"]}
    flagged = {p["path"]: p["out_of_distribution"] for p in payload["predictions"]}  # never an alert when flagged
    assert [alerts[p] for p in scored["path"]] == [q >= threshold and not flagged[p]
                                                   for p, q in zip(scored["path"], scored["p_melanoma"])]

    # Grad-CAM overlays (predict --out) of the ensemble: the mean of the fold models' maps
    out = tmp_path / "overlays"
    assert predict_command.main(list(scored["path"][:2]) + ["--model", uri, f"tracking.tracking_uri={store}", "--out", str(out)]) == 0
    assert len(list(out.glob("*_gradcam.png"))) == 2
    maps = [grad_cam(m, images[0], mel) for m in folds]
    mean = np.mean(maps, axis=0)
    assert np.allclose(grad_cam(ensemble, images[0], mel), mean / mean.max(), atol=1e-5)
    capsys.readouterr()

    # served like a single run's model
    table = served.predict(pd.DataFrame({"image": [encode_image(p) for p in scored["path"][:4]]}))
    assert np.abs(table[classes].to_numpy() - probabilities[:4]).max() <= 1e-4

    # and promoted like one: the registered champion predicts the same
    assert promote_command.main(["--run", parent.info.run_id, f"tracking.tracking_uri={store}"]) == 0
    version = client.get_model_version_by_alias("melanoma-classifier", "champion")
    assert version.tags["threshold_chosen_on"] == metadata["alert_threshold_chosen_on"]
    assert float(version.tags["oof_balanced_accuracy"]) == pytest.approx(summary["oof_balanced_accuracy"])
    capsys.readouterr()
    assert predict_command.main([scored["path"][0], f"tracking.tracking_uri={store}", "--json"]) == 0
    champion = json.loads(capsys.readouterr().out)["predictions"][0]["probabilities"]
    assert np.allclose([champion[c] for c in classes], probabilities[0], atol=1e-4)


@pytest.mark.slow
def test_an_ensemble_without_cross_validation_is_a_user_error_on_the_command_line(tmp_path):
    from tests.test_cli_errors import run_cli

    result = run_cli(tmp_path, "dataset=synthetic", "study.ensemble=true")
    assert result.returncode == 2, result.stderr
    assert "study.ensemble=true averages the logged models of a cross-validation" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_folds_reused_from_a_run_without_models_train_again_for_the_ensemble(tiny_cfg, tmp_path):
    without_models = tiny_cfg("experiment=m1", "study.cv_folds=2", "imbalance=none", "tracking.log_model=false")
    run_cross_validation(without_models, tmp_path / "first")
    cfg = tiny_cfg("experiment=m1", "study.cv_folds=2", "study.ensemble=true", "imbalance=none",
                   "study.calibration_fraction=0")  # the same folds (a slice would make other folds: new runs)
    summary = run_cross_validation(cfg, tmp_path / "second")  # the folds' twins logged no model: trained again
    assert summary["ensemble_folds"] == 2
    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    folds = client.search_runs([client.get_experiment_by_name(cfg.tracking.experiment_name).experiment_id],
                               "tags.fold != ''")
    assert sorted(r.data.tags.get("model_logged", "false") for r in folds) == ["false", "false", "true", "true"]
