"""The shift check: controlled acquisition shifts, the per-shift table and its drops, and the check of a
cross-validation's fold models on their out-of-fold images."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from melanoma_lab.evaluation import shifts


def _images(n=4, size=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_each_shift_changes_the_images_as_named_and_stays_uint8():
    images = np.full((1, 8, 8, 3), 200, np.uint8)
    warm = shifts.channel_gains(images, [1.2, 1.0, 0.8])
    assert warm.dtype == np.uint8 and tuple(warm[0, 0, 0]) == (240, 200, 160)
    assert tuple(shifts.brightness(images, 1.5)[0, 0, 0]) == (255, 255, 255)  # clipped, not wrapped
    x = _images()
    flat = shifts.contrast(x, 0.8).astype(float)
    np.testing.assert_allclose(flat.mean(axis=(1, 2)), x.astype(float).mean(axis=(1, 2)), atol=1.0)
    assert flat.std() < 0.85 * x.astype(float).std()
    assert shifts.gaussian_blur(x, 1.0).astype(float).std() < 0.6 * x.astype(float).std()
    jpeg = shifts.jpeg_quality(x, 50)
    assert jpeg.shape == x.shape and not np.array_equal(jpeg, x)


def test_the_default_shifts_are_the_moderate_ones_of_each_family(tiny_cfg):
    built = shifts.build_shifts(tiny_cfg().evaluation.shifts)
    assert {family for family, _ in built} == {"colour", "intensity", "quality"}
    gains = [node.keywords["gains"] for (family, _), node in built.items() if family == "colour"]
    assert all(0.8 <= g <= 1.2 for gain in gains for g in gain) and len(gains) >= 2
    assert built[("quality", "jpeg50")].keywords == {"quality": 50}


def test_the_table_reports_each_drop_and_the_worst_per_family():
    images = _images(20)
    labels = np.arange(20) % 2

    def predict(shift):  # a model that reads the red channel: a colour cast moves it, blur does not
        seen = images if shift is None else shift(images)
        red = seen[..., 0].mean(axis=(1, 2)) / 255.0
        return np.stack([1 - red, red], axis=1)

    def score(probabilities):
        return {"melanoma_roc_auc": float(np.mean(probabilities[:, 1])), "balanced_accuracy_frequent": 0.5}

    table = shifts.shift_table(predict, score, shifts.build_shifts({
        "colour": {"redder": {"_target_": "melanoma_lab.evaluation.shifts.channel_gains", "gains": [1.2, 1, 1]},
                   "bluer": {"_target_": "melanoma_lab.evaluation.shifts.channel_gains", "gains": [0.8, 1, 1.2]}},
        "quality": {"blur": {"_target_": "melanoma_lab.evaluation.shifts.gaussian_blur", "sigma": 1.0}}}))
    assert list(table["shift"]) == ["none", "redder", "bluer", "blur"] and len(labels) == 20
    bluer = table.set_index("shift").loc["bluer"]
    assert bluer["drop_melanoma_roc_auc"] > 0.05  # less red: lower "AUC" here, a positive drop
    metrics = shifts.shift_metrics(table, "oof_")
    assert metrics["oof_shift_worst_drop_colour_melanoma_roc_auc"] == pytest.approx(bluer["drop_melanoma_roc_auc"])
    assert abs(metrics["oof_shift_worst_drop_quality_melanoma_roc_auc"]) < 0.01
    assert metrics["oof_shift_worst_drop_colour_balanced_accuracy_frequent"] == 0.0
    assert "| colour | bluer |" in shifts.render(table)


@pytest.mark.slow
def test_a_cross_validation_checks_its_fold_models_under_every_shift_and_the_command_redoes_it(tiny_cfg, tmp_path,
                                                                                                capsys):
    from melanoma_lab.study import shift_check
    from melanoma_lab.cli import shift_check as shift_check_command
    from melanoma_lab.study.crossval import run_cross_validation
    from melanoma_lab.tracking.store import tracking_uri
    from tests.conftest import forget_tracking_state

    cfg = tiny_cfg("study.cv_folds=2", "evaluation.shifts.quality=null")
    summary = run_cross_validation(cfg, tmp_path / "cv")
    assert {"oof_shift_worst_drop_colour_melanoma_roc_auc", "oof_shift_warm_balanced_accuracy_frequent",
            "oof_shift_darker_melanoma_alert_sensitivity"} <= set(summary)
    assert not any("quality" in key or "blur" in key for key in summary)  # a family set to null is left out
    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    runs = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])
    (parent,) = [r for r in runs if "fold" not in r.data.tags]
    logged = pd.read_csv(client.download_artifacts(parent.info.run_id, "evaluation/oof_shift_check.csv",
                                                   str(tmp_path)))
    assert logged.loc[0, "shift"] == "none" and logged.loc[0, "melanoma_roc_auc"] == pytest.approx(
        parent.data.metrics["oof_melanoma_roc_auc"], abs=1e-9)  # unshifted = the CV's own out-of-fold (TTA none)
    assert len(shift_check.fold_runs(client, parent)) == 2

    forget_tracking_state()  # a new process: no fluent store, no cached artifact locations
    status = shift_check_command.main(["--run", parent.info.run_id, f"paths.root_dir={tmp_path}",
                               "evaluation.shifts.colour=null", "evaluation.shifts.intensity=null"])
    assert status == 0 and "| quality | blur |" in capsys.readouterr().out
    assert "oof_shift_worst_drop_quality_melanoma_roc_auc" in client.get_run(parent.info.run_id).data.metrics
    (child, *_) = [r for r in runs if "fold" in r.data.tags]
    assert shift_check_command.main(["--run", child.info.run_id, f"paths.root_dir={tmp_path}"]) == 2
    assert "no cross-validation parent" in capsys.readouterr().err
