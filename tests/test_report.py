import numpy as np
import pandas as pd
import pytest
from hydra import initialize_config_dir
from mlflow.tracking import MlflowClient

from melanoma_lab.cli import report
from melanoma_lab.reporting import tables
from melanoma_lab.reporting.selection import Study
from melanoma_lab.reporting.statistics import balanced_accuracy_of, bootstrap_interval, paired_difference
from melanoma_lab.study.experiment import run_experiment
from melanoma_lab.study.runner import run_study
from melanoma_lab.tracking.store import tracking_uri
from tests.conftest import CONF_DIR, TINY


def _table(labels, predicted, paths=None) -> pd.DataFrame:
    probs = np.eye(3)[predicted]
    table = pd.DataFrame(probs, columns=["p_a", "p_b", "p_c"])
    table.insert(0, "label", labels)
    table.insert(0, "path", paths or [f"img{i}" for i in range(len(labels))])
    return table


def test_bootstrap_interval_brackets_the_observed_score_and_narrows_with_data():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    predicted = np.where(rng.random(300) < 0.7, labels, (labels + 1) % 3)
    observed = balanced_accuracy_of(_table(labels, predicted))
    low, high = bootstrap_interval([_table(labels, predicted)], 300, 0.95)
    assert low < observed < high and high - low < 0.2
    small_low, small_high = bootstrap_interval([_table(labels[:30], predicted[:30])], 300, 0.95)
    assert small_high - small_low > high - low
    perfect = bootstrap_interval([_table(labels, labels)], 100, 0.95)
    assert perfect == (1.0, 1.0)


def test_paired_difference_detects_a_real_improvement_and_needs_same_images():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 400)
    worse = np.where(rng.random(400) < 0.5, labels, (labels + 1) % 3)
    better = np.where(rng.random(400) < 0.9, labels, (labels + 1) % 3)
    diff = paired_difference([_table(labels, worse)], [_table(labels, better)], 300, 0.95)
    assert diff["delta"] > 0.3 and diff["low"] > 0 and diff["share_not_better"] == 0.0
    same = paired_difference([_table(labels, worse)], [_table(labels, worse)], 100, 0.95)
    assert same["delta"] == 0 and same["low"] == same["high"] == 0
    assert diff["images"] == 400
    shifted = _table(labels[100:], better[100:], [f"img{i}" for i in range(100, 400)])
    assert paired_difference([_table(labels, worse)], [shifted], 50, 0.9)["images"] == 300
    with pytest.raises(ValueError, match="both runs were evaluated on"):
        paired_difference([_table(labels, worse)], [_table(labels, better, [f"x{i}" for i in range(400)])], 10, 0.9)


@pytest.mark.slow
def test_study_runs_every_experiment_and_seed_writes_report_and_resumes(tmp_path, shared_cache):
    overrides = TINY + [f"paths.cache_dir={shared_cache}", f"paths.root_dir={tmp_path}", "study.name=tiny-study",
                        "study.experiments=[m1,m2]", "study.seeds=[1,2]", "study.bootstrap_samples=100",
                        "tracking.log_model=false"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        from hydra import compose

        cfg = compose(config_name="config", overrides=overrides)
        by_hand = ["experiment=m2", "trainer.seed=2"]  # run before the study: adopted by it, not trained again
        run_experiment(compose(config_name="config", overrides=overrides + by_hand), tmp_path / "by_hand",
                       overrides + by_hand)
        path = run_study(cfg, tmp_path / "study", overrides)
        client = MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
        experiment = client.get_experiment_by_name("tiny-study")
        runs = client.search_runs([experiment.experiment_id])
        assert sorted((r.data.tags["experiment"], r.data.tags["seed"]) for r in runs) == [
            ("m1", "1"), ("m1", "2"), ("m2", "1"), ("m2", "2")]
        assert {r.data.tags.get("launched_by") for r in runs} == {"study"}
        assert len({r.data.tags["study_launch"] for r in runs}) == 1
        [adopted] = [r for r in runs if "adopted_by_study" in r.data.tags]
        assert (adopted.data.tags["experiment"], adopted.data.tags["seed"]) == ("m2", "2")
        assert adopted.data.tags["adopted_by_study"] == adopted.data.tags["study_launch"]
        run_study(cfg, tmp_path / "study", overrides)  # resumes: everything FINISHED is skipped
        assert len(client.search_runs([experiment.experiment_id])) == 4
        assert client.get_run(adopted.info.run_id).data.tags == adopted.data.tags  # adopted once, not again

    text = path.read_text()
    assert path == tmp_path / "experiments" / "reports" / "tiny-study" / "report.md"
    for needle in ("| m1 ", "| m2 ", "val balanced acc", "s/epoch (median)", "melanomas found", "m2 vs m1", "augmentation.flip",
                   "train-validation gap", "Data audit", "learning_curves.png", "Full vs clean Test", "runtime.device"):
        assert needle in text, needle
    page = (path.parent / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "<table" in page

    (path.parent / "report.md").unlink()
    assert report.main(["--study", "tiny-study", f"paths.root_dir={tmp_path}", "study.bootstrap_samples=100"]) == 0
    assert "| m2 " in path.read_text()


def test_report_of_unknown_study_says_what_to_do(tmp_path, capsys):
    assert report.main(["--study", "nope", f"paths.root_dir={tmp_path}"]) == 1
    assert "make reproduce" in capsys.readouterr().err


def test_cross_validation_parents_are_tabulated_beside_single_runs():
    study = Study("s", [], ["melanoma"], None, "val", pd.DataFrame([
        {"experiment": "m4", "folds": 5, "seed": "1", "cv_mean_val_balanced_accuracy": 0.61,
         "cv_sd_val_balanced_accuracy": 0.03, "cv_mean_val_melanoma_roc_auc": 0.9,
         "cv_sd_val_melanoma_roc_auc": 0.01}]))
    table = tables.cross_validation_table(study)
    assert table.loc[0, "val balanced acc"] == "0.610 ± 0.030"
    assert table.loc[0, "val melanoma ROC-AUC"] == "0.900 ± 0.010" and table.loc[0, "val macro F1"] == "n/a"
    assert table.loc[0, "OOF balanced acc"] == "n/a"  # a parent logged before out-of-fold metrics


def test_nested_cross_validation_parents_show_the_scored_folds_and_out_of_fold_metrics():
    study = Study("s", [], ["melanoma"], None, "val", pd.DataFrame([
        {"experiment": "m5", "folds": 5, "seed": "1", "cv_mean_fold_balanced_accuracy": 0.6,
         "cv_sd_fold_balanced_accuracy": 0.05, "oof_balanced_accuracy": 0.62, "oof_melanoma_roc_auc": 0.951,
         "oof_melanoma_alert_sensitivity": 0.9, "oof_melanoma_alert_specificity": 0.805}]))
    row = tables.cross_validation_table(study).loc[0]
    assert row["fold balanced acc"] == "0.600 ± 0.050" and row["OOF balanced acc"] == "0.620"
    assert (row["OOF melanoma ROC-AUC"], row["OOF alert sensitivity"], row["OOF alert specificity"]) == (
        "0.951", "0.900", "0.805")


@pytest.mark.slow
def test_a_cross_validated_study_reports_every_experiment_on_out_of_fold_predictions(tmp_path, shared_cache):
    from melanoma_lab.config.compose import compose
    from melanoma_lab.reporting.selection import load_study

    overrides = TINY + [f"paths.cache_dir={shared_cache}", f"paths.root_dir={tmp_path}", "study.name=cv-study",
                        "study.experiments=[m1,m2]", "study.seeds=[1,2]", "study.cv_folds=2",
                        "study.bootstrap_samples=100", "tracking.log_model=false", "evaluation.frequent_class_images=12"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        path = run_study(compose(overrides), tmp_path / "study", overrides)
    client = MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    study = load_study(client, "cv-study")
    assert study.held_out == "oof"
    assert sorted((r.experiment, r.seed) for r in study.runs) == [("m1", 1), ("m1", 2), ("m2", 1), ("m2", 2)]
    for run in study.runs:  # the cross-validation parents, each with every Train image predicted once
        oof = run.predictions["oof"]
        assert run.tags["cv_folds"] == "2" and not oof["path"].duplicated().any() and set(oof["fold"]) == {1, 2}
        labels, predicted = oof["label"].to_numpy(), oof.filter(like="p_").to_numpy().argmax(axis=1)
        counts = np.bincount(labels, minlength=len(study.classes))
        frequent = [c for c in range(len(study.classes)) if counts[c] >= 12]
        assert 0 < len(frequent) < len(study.classes)  # some tiny classes are left out of that mean
        assert run.metrics["oof_frequent_classes"] == len(frequent)
        assert run.metrics["oof_balanced_accuracy_frequent"] == pytest.approx(
            np.mean([(predicted[labels == c] == c).mean() for c in frequent]))
        assert run.metrics["cv_seconds"] >= run.metrics["cv_mean_run_seconds"] > 0
        assert run.tags["runtime.keras_backend"] == "tensorflow"  # the folds' runtime, on the parent
    results = tables.results_table(study, 100, 0.95).set_index("experiment")
    aucs = [r.metrics["oof_melanoma_roc_auc"] for r in study.of("m1")]
    assert results.loc["m1", "seed range melanoma AUC"] == f"{max(aucs) - min(aucs):.3f}"
    text = path.read_text()
    for needle in ("oof balanced accuracy", "frequent classes)", "oof alert sensitivity", "oof alert specificity",
                   "s per CV (median)", "m2 vs m1", "out-of-fold predictions"):
        assert needle in text, needle


def test_intervals_and_paired_differences_average_one_fixed_set_of_frequent_classes():
    """A class of two held-out images is in some bootstrap replicates and not in others: averaged in, it would
    change what balanced accuracy means from replicate to replicate. With min_images the set is fixed (issue 26)."""
    rng = np.random.default_rng(3)
    labels = np.concatenate([rng.integers(0, 3, 300), [3, 3]])  # class 3: two images, always missed
    predicted = np.where(labels == 3, 0, labels)  # every frequent image right
    assert bootstrap_interval([_table(labels, predicted)], 200, 0.95, min_images=10) == (1.0, 1.0)
    low, _ = bootstrap_interval([_table(labels, predicted)], 200, 0.95)  # min_images=1: the rare class counts
    assert low < 0.8
    worse = np.where(rng.random(len(labels)) < 0.8, predicted, (predicted + 1) % 3)
    fixed = paired_difference([_table(labels, worse)], [_table(labels, predicted)], 200, 0.95, min_images=10)
    every = paired_difference([_table(labels, worse)], [_table(labels, predicted)], 200, 0.95)
    assert fixed["high"] - fixed["low"] < every["high"] - every["low"]
