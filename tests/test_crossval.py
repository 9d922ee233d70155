import mlflow
import numpy as np
import pandas as pd
import pytest

from melanoma_lab.config.schema import ConfigError
from melanoma_lab.study.crossval import run_cross_validation, summarise_folds
from melanoma_lab.data.sources import load_catalog
from melanoma_lab.study.experiment import run_experiment
from melanoma_lab.data.split import content_groups, fold_split
from melanoma_lab.tracking.store import tracking_uri


def test_summary_is_mean_and_sd_over_folds():
    table, summary = summarise_folds([{"val_a": 0.5, "val_b": 1.0}, {"val_a": 0.7, "val_b": float("nan")}])
    assert list(table["fold"]) == [1, 2]
    assert summary["cv_mean_val_a"] == pytest.approx(0.6) and summary["cv_sd_val_a"] == pytest.approx(0.1414, abs=1e-4)
    assert "cv_mean_val_b" not in summary


def test_near_duplicates_share_a_fold_with_their_copies():
    files = pd.DataFrame({"path": [f"p{i}" for i in range(40)], "label": ["a", "b"] * 20,
                          "sha256": [f"s{i}" for i in range(40)]})
    files.loc[1, "sha256"] = "s0"  # byte-identical pair p0/p1
    near = [[{"path": "p1"}, {"path": "p7"}], [{"path": "p20"}, {"path": "p30"}]]
    files["group"] = content_groups(files, near)
    assert files["group"][0] == files["group"][1] == files["group"][7]
    assert files["group"][20] == files["group"][30] != files["group"][0]
    for fold in range(4):
        train, val = fold_split(files, 4, fold, seed=3)
        for group in ({"p0", "p1", "p7"}, {"p20", "p30"}):
            assert group <= set(train["path"]) or group <= set(val["path"])
        assert set(train["path"]).isdisjoint(val["path"])


@pytest.mark.slow
def test_cross_validation_logs_a_parent_with_one_child_per_fold(tiny_cfg, tmp_path):
    # study.nested=false: each fold is the validation split itself (chooses and scores), as before issue 15
    cfg = tiny_cfg("experiment=m3", "study.cv_folds=3", "tracking.log_model=false", "imbalance.extra_per_class=3",
                   "imbalance.workers=1", "study.nested=false")
    summary = run_cross_validation(cfg, tmp_path / "cv")
    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    runs = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1 and sorted(r.data.tags["fold"] for r in children) == ["1/3", "2/3", "3/3"]
    assert all(r.info.status == "FINISHED" for r in runs)
    child_bacc = [r.data.metrics["val_balanced_accuracy"] for r in children]
    assert parents[0].data.metrics["cv_mean_val_balanced_accuracy"] == pytest.approx(sum(child_bacc) / 3)
    assert summary["cv_mean_val_balanced_accuracy"] == pytest.approx(sum(child_bacc) / 3)
    assert "cv_sd_val_melanoma_sensitivity" in parents[0].data.metrics
    # every image is validated exactly once across the folds
    validated = []
    for r in children:
        local = client.download_artifacts(r.info.run_id, "evaluation/val_predictions.csv")
        validated += list(pd.read_csv(local)["path"])
    train_images = load_catalog(cfg.dataset).split("train")
    assert len(validated) == len(set(validated)) and set(validated) == set(train_images["path"])
    oof = pd.read_csv(tmp_path / "cv" / "oof_predictions.csv")  # out of fold: the validation folds
    assert sorted(oof["path"]) == sorted(validated)
    assert parents[0].data.tags["oof_threshold_chosen_on"].startswith("the scored fold itself")


# the fast tier's one cross-validation (one fold of three, ~10 s): the others here are in the full tier
def test_only_the_chosen_folds_run_and_a_bad_fold_number_is_refused_before_any_work(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match="study.cv_run_folds"):
        run_cross_validation(tiny_cfg("study.cv_folds=3", "study.cv_run_folds=[4]"), tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    cfg = tiny_cfg("experiment=m1", "study.cv_folds=3", "study.cv_run_folds=[2]", "tracking.log_model=false")
    run_cross_validation(cfg, tmp_path / "cv")
    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    runs = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.run_name == "m1-cv3-folds2"
    assert [r.data.tags["fold"] for r in runs if r is not parent] == ["2/3"]
    assert list(pd.read_csv(tmp_path / "cv" / "cv_folds.csv")["fold"]) == [2]


@pytest.mark.slow
def test_a_fold_ablation_and_the_full_cross_validation_are_different_runs(tiny_cfg, tmp_path, caplog):
    base = ("experiment=m1", "study.cv_folds=2", "tracking.log_model=false", "imbalance=none")
    ablation = run_cross_validation(tiny_cfg(*base, "study.cv_run_folds=[1]"), tmp_path / "ablation")
    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    experiment_id = client.get_experiment_by_name("melanoma-study").experiment_id
    (fold_1,) = client.search_runs([experiment_id], "tags.fold = '1/2'")
    with caplog.at_level("WARNING"):
        full = run_cross_validation(tiny_cfg(*base), tmp_path / "full")
    parents = client.search_runs([experiment_id], "tags.cv_folds = '2'", order_by=["start_time ASC"])
    assert [p.info.run_name for p in parents] == ["m1-cv2-folds1", "m1-cv2"]
    assert [p.data.tags["cv_run_folds"] for p in parents] == ["1", "1,2"]
    assert full != ablation and list(pd.read_csv(tmp_path / "full" / "cv_folds.csv")["fold"]) == [1, 2]
    # the reused fold's out-of-fold predictions come from its logged artifacts, unchanged
    partial, whole = (pd.read_csv(tmp_path / run / "oof_predictions.csv") for run in ("ablation", "full"))
    assert not (tmp_path / "full" / "fold_1" / "heldout_predictions.csv").exists()
    pd.testing.assert_frame_equal(whole[whole["fold"] == 1].reset_index(drop=True), partial)
    assert set(whole["fold"]) == {1, 2} and not whole["path"].duplicated().any()
    # the shared fold is reused (same config, data, code and fold), and that is announced with the way out
    assert len(client.search_runs([experiment_id], "tags.fold = '1/2'")) == 1
    assert any(f"reusing run {fold_1.info.run_id}" in r.message and "tracking.skip_finished=false" in r.message
               and r.levelname == "WARNING" for r in caplog.records)


@pytest.mark.slow
def test_nested_folds_choose_on_an_inner_split_and_the_parent_scores_out_of_fold(tiny_cfg, tmp_path):
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    cfg = tiny_cfg("experiment=m1", "study.cv_folds=3", "tracking.log_model=false", "imbalance=none")
    assert cfg.study.nested  # the default for cross-validation
    summary = run_cross_validation(cfg, tmp_path / "cv")
    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    runs = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = sorted((r for r in runs if r is not parent), key=lambda r: r.data.tags["fold"])
    train_paths = set(load_catalog(cfg.dataset).split("train")["path"])

    def table(run, name):
        return pd.read_csv(client.download_artifacts(run.info.run_id, f"evaluation/{name}_predictions.csv", tmp_path))

    outer_folds = []
    for child in children:
        inner, outer = table(child, "val"), table(child, "fold")
        assert child.data.tags["nested"] == "true"
        assert set(inner["path"]).isdisjoint(outer["path"])  # selection never sees the scored fold
        metrics = child.data.metrics
        assert metrics["train_images"] + metrics["val_images"] + len(outer) == len(train_paths)
        # the alert threshold is chosen on the inner split and applied unchanged to the outer fold
        assert metrics["fold_melanoma_alert_threshold"] == metrics["val_melanoma_alert_threshold"]
        outer_folds.append(outer.assign(fold=int(child.data.tags["fold"][0]),
                                        alert_threshold=metrics["val_melanoma_alert_threshold"]))
    oof = pd.read_csv(client.download_artifacts(parent.info.run_id, "oof_predictions.csv", tmp_path))
    assert len(oof) == len(train_paths) and set(oof["path"]) == train_paths  # every Train image once
    expected = pd.concat(outer_folds).set_index("path").loc[oof["path"]]
    assert list(oof["fold"]) == list(expected["fold"])
    assert np.allclose(oof["alert_threshold"], expected["alert_threshold"])
    classes = load_catalog(cfg.dataset).classes
    probabilities = oof[[f"p_{c}" for c in classes]].to_numpy()
    labels, mel = oof["label"].to_numpy(), classes.index("melanoma")
    metrics = parent.data.metrics
    assert metrics["oof_balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels, probabilities.argmax(1)))
    assert metrics["oof_melanoma_roc_auc"] == pytest.approx(roc_auc_score(labels == mel, probabilities[:, mel]))
    alerts = probabilities[:, mel] >= oof["alert_threshold"].to_numpy()
    assert metrics["oof_melanoma_alert_sensitivity"] == pytest.approx(alerts[labels == mel].mean())
    assert metrics["oof_melanoma_alert_specificity"] == pytest.approx((~alerts[labels != mel]).mean())
    fold_bacc = [c.data.metrics["fold_balanced_accuracy"] for c in children]
    assert metrics["cv_mean_fold_balanced_accuracy"] == pytest.approx(np.mean(fold_bacc))
    assert summary["oof_balanced_accuracy"] == metrics["oof_balanced_accuracy"]
    assert parent.data.tags["nested"] == "true"
    assert parent.data.tags["oof_threshold_chosen_on"] == "inner validation split of each fold"


@pytest.mark.slow
def test_out_of_fold_predictions_without_tracking(tiny_cfg, tmp_path):
    cfg = tiny_cfg("experiment=m1", "study.cv_folds=2", "tracking.enabled=false", "imbalance=none")
    summary = run_cross_validation(cfg, tmp_path / "cv")
    oof = pd.read_csv(tmp_path / "cv" / "oof_predictions.csv")
    assert set(oof["path"]) == set(load_catalog(cfg.dataset).split("train")["path"])
    assert set(oof["fold"]) == {1, 2} and 0 <= summary["oof_balanced_accuracy"] <= 1
    assert list(oof.columns[:4]) == ["path", "label", "fold", "alert_threshold"]
    assert oof["group"].notna().all()  # the split group of each image: intervals resample these (issue 26, point 4)


@pytest.mark.slow
def test_a_run_stands_in_only_for_a_run_of_its_own_kind(tiny_cfg, tmp_path):
    """A fold carries every identity tag of a single-split run with the same config, data and code (and more): it
    must not be reused as one, nor a nested fold as a fold that is not nested."""
    base = ("experiment=m1", "tracking.log_model=false", "imbalance=none")
    one_fold = ("study.cv_folds=2", "study.cv_run_folds=[1]")
    run_cross_validation(tiny_cfg(*base, *one_fold), tmp_path / "nested")  # study.nested=true by default
    single = run_experiment(tiny_cfg(*base), tmp_path / "single")
    run_cross_validation(tiny_cfg(*base, *one_fold, "study.nested=false"), tmp_path / "flat")
    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    runs = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])
    kinds = sorted((r.data.tags.get("run_kind"), r.data.tags.get("fold", ""), r.data.tags.get("nested", ""))
                   for r in runs)
    assert kinds == [("cv", "", "false"), ("cv", "", "true"), ("fold", "1/2", "false"), ("fold", "1/2", "true"),
                     ("single", "", "")]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert not any(key.startswith("fold_") for key in single)  # its own metrics, not a fold's
