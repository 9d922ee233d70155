"""The fold ensemble's own alert threshold (issue 26, point 1): chosen on the ensemble's averaged probabilities of a
calibration slice held out before the folds, stated in its metadata, and shown with its operating point and Test
numbers (intervals over the split's groups) in the registry tags, the model card, ``predict --json`` and the
report."""

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from melanoma_lab.cli import predict as predict_command
from melanoma_lab.cli import promote as promote_command
from melanoma_lab.data.calibration_slice import calibration_fraction, calibration_slice
from melanoma_lab.errors import UserError
from melanoma_lab.evaluation import registry
from melanoma_lab.evaluation.inference import predict_probabilities
from melanoma_lab.evaluation.metrics import calibrate_alert
from melanoma_lab.reporting.selection import Study
from melanoma_lab.reporting.tables import cross_validation_table
from melanoma_lab.evaluation.bootstrap import replicate_rows
from melanoma_lab.study.calibration import MEMBER_OOF, SLICE, on_member_oof, on_slice
from melanoma_lab.study.preparation import decode_split, load_audited_data, split_labelled
from melanoma_lab.tracking.identity import run_identity
from melanoma_lab.tracking.store import tracking_uri
from tests.conftest import data_recipe

CLASSES = ["nevus", "melanoma", "keratosis"]


def fake_slice(seed: int = 0, images: int = 60):
    """Labels, averaged-looking probabilities (melanoma scored higher) and groups of two images each."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, images)
    logits = rng.normal(size=(images, 3)) + 2.0 * np.eye(3)[labels]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return labels, probabilities, np.repeat([f"g{i}" for i in range(images // 2)], 2)


def test_the_ensemble_threshold_is_calibrate_alert_on_its_own_slice_probabilities_with_intervals():
    labels, probabilities, groups = fake_slice()
    chosen = on_slice(labels, probabilities, groups, CLASSES, "melanoma", 0.9, 0.1, samples=200, confidence=0.95)
    expected = calibrate_alert(labels, probabilities, CLASSES, "melanoma", 0.9)
    assert chosen.source == SLICE and chosen.alert.threshold == expected.threshold
    assert (chosen.images, chosen.melanomas) == (60, int((labels == 1).sum()))
    alerts = probabilities[:, 1] >= expected.threshold
    point = {"ensemble_calibration_melanoma_alert_sensitivity": alerts[labels == 1].mean(),
             "ensemble_calibration_melanoma_alert_specificity": (~alerts[labels != 1]).mean()}
    for key, value in point.items():
        low, high = (chosen.metrics[bound] for bound in registry.interval_keys(key))
        assert chosen.metrics[key] == pytest.approx(value) and low <= value <= high and low < high
    assert chosen.metrics["ensemble_calibration_melanoma_alert_sensitivity"] >= 0.9  # chosen there, by construction
    metadata = chosen.metadata()
    assert metadata["alert_threshold_source"] == "calibration_slice" and metadata["calibration_images"] == 60
    assert "own averaged probabilities on a calibration slice of 60" in metadata["alert_threshold_chosen_on"]
    assert chosen.logged()["ensemble_calibration_images"] == 60


def test_without_a_slice_the_threshold_comes_from_member_oof_and_says_so():
    labels, probabilities, _ = fake_slice(1)
    fallback = on_member_oof(labels, probabilities, CLASSES, "melanoma", 0.9, 0.0, "study.calibration_fraction=0")
    assert fallback.source == MEMBER_OOF and fallback.logged() == {}
    assert fallback.alert.threshold == calibrate_alert(labels, probabilities, CLASSES, "melanoma", 0.9).threshold
    assert fallback.metadata()["alert_threshold_chosen_on"].startswith("out-of-fold predictions of the individual")
    no_melanoma = labels != 1
    assert on_slice(labels[no_melanoma], probabilities[no_melanoma], np.arange(no_melanoma.sum()), CLASSES,
                    "melanoma", 0.9, 0.1, 50, 0.95) is None  # then the caller falls back to member OOF


def test_bootstrap_replicates_draw_whole_groups():
    groups = np.array(["a", "b", "b", "c", "c", "c"])
    for rows in replicate_rows(groups, 20, 3):
        drawn = pd.Series(groups[rows]).value_counts()
        assert all(count % {"a": 1, "b": 2, "c": 3}[g] == 0 for g, count in drawn.items())
        assert len(rows) == drawn.sum() and len(set(groups[rows])) <= 3


def test_the_slice_is_grouped_stratified_and_in_no_fold(tiny_cfg, tmp_path):
    cfg = tiny_cfg("study.cv_folds=3", "study.ensemble=true", "study.calibration_fraction=0.2")
    audited = load_audited_data(cfg.dataset, cfg.audit, tmp_path)
    held = calibration_slice(audited.files, cfg.study, cfg.trainer.seed)
    train = audited.files[audited.files["split"] == "train"].reset_index(drop=True)
    assert 0.12 * len(train) <= len(held) <= 0.28 * len(train)
    assert set(held["label"]) == set(train["label"])  # stratified: every class of Train is in it
    assert not set(held["group"]) & set(train.loc[~train["path"].isin(held["path"]), "group"])  # grouped
    recipe = data_recipe(cfg)
    for fold in range(3):
        parts = [part for part in split_labelled(recipe, train, fold) if part is not None]
        assert not set(held["path"]) & set().union(*(set(part["path"]) for part in parts))
    every_fold = set().union(*(set(split_labelled(recipe, train, fold)[2]["path"]) for fold in range(3)))
    assert every_fold == set(train["path"]) - set(held["path"])  # the folds cover the rest, once

    # it changes what a fold holds, so it is part of a fold's identity; without an ensemble nothing changes
    resolved = OmegaConf.to_container(cfg, resolve=True)
    plain = resolved | {"study": resolved["study"] | {"ensemble": False}}
    with_slice, without = (run_identity(r, audited.files, 0) for r in (resolved, plain))
    assert with_slice["calibration_fraction"] == "0.2" and "calibration_fraction" not in without
    assert calibration_fraction(plain["study"]) == 0.0 and len(calibration_slice(audited.files, plain["study"], 1)) == 0


def test_a_calibration_fraction_out_of_range_is_a_user_error(tiny_cfg, tmp_path):
    from melanoma_lab.study.crossval import run_cross_validation

    cfg = tiny_cfg("study.cv_folds=2", "study.ensemble=true", "study.calibration_fraction=0.7")
    with pytest.raises(UserError, match="study.calibration_fraction=0.7"):
        run_cross_validation(cfg, tmp_path / "cv")
    assert not (tmp_path / "cv").exists()


def test_the_report_shows_the_ensemble_operating_point_with_intervals():
    row = {"experiment": "m1", "folds": 3, "seed": "1", "ensemble_melanoma_alert_threshold": 0.31,
           "ensemble_calibration_images": 40, "ensemble_calibration_melanoma_alert_sensitivity": 0.9,
           "ensemble_calibration_melanoma_alert_sensitivity_ci_low": 0.7,
           "ensemble_calibration_melanoma_alert_sensitivity_ci_high": 1.0, "ensemble_test_balanced_accuracy": 0.5}
    study = Study("s", [], CLASSES, None, "oof", pd.DataFrame([row]))
    table = cross_validation_table(study).iloc[0]
    assert table["ensemble calibration alert sensitivity"] == "0.900 [0.700, 1.000]"
    assert table["ensemble test balanced acc"] == "0.500"  # logged without an interval: none made up
    assert table["ensemble alert threshold (chosen on)"] == "0.310 (its own, 40 calibration images)"
    assert table["ensemble test alert sensitivity"] == "n/a"


@pytest.mark.slow
def test_the_registered_ensemble_carries_its_own_threshold_and_operating_point(tiny_cfg, tmp_path, capsys):
    from melanoma_lab.study.crossval import run_cross_validation
    from melanoma_lab.study.ensemble import fold_model

    cfg = tiny_cfg("experiment=m1", "study.cv_folds=2", "study.ensemble=true", "imbalance=none",
                   "study.calibration_fraction=0.25", "study.bootstrap_samples=200", "study.shift_check=false")
    summary = run_cross_validation(cfg, tmp_path / "cv")
    store = tracking_uri(None, tmp_path / "mlruns")
    client = mlflow.tracking.MlflowClient(store)
    mlflow.set_tracking_uri(store)
    runs = client.search_runs([client.get_experiment_by_name(cfg.tracking.experiment_name).experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    folds = [r for r in runs if r is not parent]
    audited = load_audited_data(cfg.dataset, cfg.audit, tmp_path / "audit")
    classes, held = audited.catalog.classes, calibration_slice(audited.files, cfg.study, cfg.trainer.seed)

    # no slice image was scored (or chosen on) by a fold: the OOF and every fold's validation leave it out
    oof = pd.read_csv(client.download_artifacts(parent.info.run_id, "oof_predictions.csv", tmp_path))
    assert len(held) and not set(held["path"]) & set(oof["path"])
    for run in folds:
        for split in ("val", "fold"):
            table = pd.read_csv(client.download_artifacts(run.info.run_id, f"evaluation/{split}_predictions.csv",
                                                          tmp_path))
            assert not set(held["path"]) & set(table["path"])
        assert run.data.tags["calibration_fraction"] == "0.25"

    # the threshold: calibrate_alert on the ensemble's own averaged probabilities of the slice
    part = decode_split(cfg.dataset, classes, held)
    averaged = np.mean([predict_probabilities(fold_model(r), part.images, 16, cfg.evaluation.tta) for r in folds],
                       axis=0)
    expected = calibrate_alert(part.labels, averaged, classes, "melanoma", cfg.evaluation.fixed_sensitivity)
    uri = f"runs:/{parent.info.run_id}/model"
    metadata = mlflow.models.get_model_info(uri).metadata
    assert metadata["melanoma_alert_threshold"] == pytest.approx(expected.threshold, abs=1e-5)
    assert metadata["alert_threshold_source"] == "calibration_slice"
    assert metadata["calibration_images"] == len(held) == summary["ensemble_calibration_images"]
    sensitivity = "ensemble_calibration_melanoma_alert_sensitivity"
    scores = metadata["ensemble_scores"]
    assert scores[sensitivity] == pytest.approx(summary[sensitivity])
    assert scores[f"{sensitivity}_ci_low"] <= scores[sensitivity] <= scores[f"{sensitivity}_ci_high"]
    assert all(f"ensemble_test_{name}_ci_low" in scores for name in ("balanced_accuracy", "melanoma_roc_auc"))
    assert parent.data.tags["ensemble_alert_source"] == "calibration_slice"

    # promote tags the registered version with the ensemble's own numbers; the card and predict --json show them
    assert promote_command.main(["--run", parent.info.run_id, f"tracking.tracking_uri={store}"]) == 0
    version = client.get_model_version_by_alias("melanoma-classifier", "champion")
    assert version.tags["alert_threshold_source"] == "calibration_slice"
    assert float(version.tags[sensitivity]) == pytest.approx(summary[sensitivity])
    for key in (sensitivity, "ensemble_test_balanced_accuracy", "ensemble_test_melanoma_alert_specificity"):
        low, high = (float(version.tags[bound]) for bound in registry.interval_keys(key))
        assert low <= float(version.tags[key]) <= high
    assert "fold ensemble, calibration slice alert sensitivity" in version.description
    assert registry.interval_text(summary, "ensemble_test_balanced_accuracy") in version.description
    capsys.readouterr()
    assert predict_command.main([held["path"].iloc[0], f"tracking.tracking_uri={store}", "--json"]) == 0
    model = json.loads(capsys.readouterr().out)["model"]
    assert model["alert_threshold_source"] == "calibration_slice" and model["calibration_images"] == len(held)
    assert model["ensemble_scores"][f"{sensitivity}_ci_high"] == pytest.approx(summary[f"{sensitivity}_ci_high"])
    print(f"ensemble threshold {expected.threshold:.4f} on {len(held)} calibration images: "
          + ", ".join(f"{k.removeprefix('ensemble_')}={v:.3f}" for k, v in summary.items()
                      if k.startswith("ensemble_calibration_melanoma")))
