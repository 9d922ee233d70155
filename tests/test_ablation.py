"""Ablation tables from cross-validation parents in MLflow (synthetic out-of-fold predictions: no training)."""

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from melanoma_lab.cli.ablation import main
from melanoma_lab.reporting.ablation import ablation_table, load_groups, paired_deltas

CLASSES = ["melanoma", "nevus", "keratosis", "rare"]
LABELS = np.repeat(np.arange(4), [80, 80, 40, 4])  # "rare" has 4 images: not a frequent class
SAME_FOLDS = {"experiment": "m5", "cv_folds": "5", "cv_run_folds": "1,2", "nested": "true", "seed": "1",
              "data_fingerprint": "abc", "calibration_fraction": "0.1"}
COMMON = {"override.experiment": "m5", "override.dataset.root": "/data", "override.study.cv_folds": "5"}


def _oof(correct: float, seed: int) -> pd.DataFrame:
    """Predictions right on a ``correct`` share of each class's images (the same images per share), else nevus
    or melanoma; melanoma probability high on the right melanomas."""
    rng = np.random.default_rng(seed)
    probs = np.full((len(LABELS), 4), 0.05)
    for c in range(4):
        rows = np.flatnonzero(LABELS == c)
        right = rows[: int(round(correct * len(rows)))]
        probs[right, c] = 0.85
        wrong = np.setdiff1d(rows, right)
        probs[wrong, 1 if c != 1 else 0] = 0.85
    probs += rng.uniform(0, 0.01, probs.shape)
    probs /= probs.sum(axis=1, keepdims=True)
    table = pd.DataFrame(probs, columns=[f"p_{c}" for c in CLASSES])
    return table.assign(path=[f"Train/{i:04d}.jpg" for i in range(len(LABELS))], label=LABELS)[
        ["path", "label", *table.columns]]


def _parent(client, experiment_id, tmp_path, name, oof, tags, status="FINISHED"):
    run = client.create_run(experiment_id, run_name=name, tags={**SAME_FOLDS, **COMMON, **tags})
    client.log_param(run.info.run_id, "dataset.melanoma_class", "melanoma")
    client.log_metric(run.info.run_id, "oof_melanoma_alert_sensitivity", 0.9)
    client.log_metric(run.info.run_id, "oof_melanoma_alert_specificity", 0.7)
    client.log_metric(run.info.run_id, "cv_mean_run_seconds", 600.0)
    path = tmp_path / name / "oof_predictions.csv"
    path.parent.mkdir()
    oof.to_csv(path, index=False)
    client.log_artifact(run.info.run_id, str(path))
    client.set_terminated(run.info.run_id, status)
    return run.info.run_id


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("melanoma-study", artifact_location=(tmp_path / "artifacts").as_uri())
    ids = {
        "base": _parent(client, experiment, tmp_path, "base", _oof(0.6, 0), {"override.study.cv_run_folds": "[1,2]"}),
        "no_ema": _parent(client, experiment, tmp_path, "no_ema", _oof(0.9, 1),
                          {"override.optimizer.use_ema": "false", "override.tracking.enabled": "true"}),
        "again": _parent(client, experiment, tmp_path, "again", _oof(0.6, 2), {}),
        "failed": _parent(client, experiment, tmp_path, "failed", _oof(1.0, 3), {"override.model.residual": "false"},
                          status="FAILED"),
        "other_seed": _parent(client, experiment, tmp_path, "other_seed", _oof(0.5, 4), {"seed": "2"}),
    }
    single = client.create_run(experiment, run_name="m5", tags={"experiment": "m5", "seed": "1"})  # no CV: not here
    client.set_terminated(single.info.run_id, "FINISHED")
    return uri, client, ids


def test_runs_on_identical_folds_are_compared_with_the_run_that_changes_nothing(store):
    uri, client, ids = store
    groups = load_groups(client, "melanoma-study", "m5")
    assert len(groups) == 2  # seed 2 draws other folds: its own group; the single-split run is in none
    arms = groups[tuple(SAME_FOLDS.values())]
    assert [a.run_id for a in arms] == [ids["base"], ids["again"], ids["no_ema"]]  # FAILED runs are left out
    table = ablation_table(arms, min_images=10, samples=300, confidence=0.95)
    assert list(table["change"]) == ["baseline", "baseline (replicate)", "optimizer.use_ema=false"]
    assert list(table["frequent_classes"]) == [3, 3, 3]
    base, again, no_ema = table.to_dict("records")
    assert base["balanced_accuracy_frequent"] == pytest.approx(0.6, abs=0.01)  # "rare" (4 images) is left out
    assert no_ema["delta_balanced_accuracy_frequent"] == pytest.approx(0.3, abs=0.01)
    assert 0 < no_ema["delta_balanced_accuracy_frequent_low"] < 0.3 < no_ema["delta_balanced_accuracy_frequent_high"]
    assert no_ema["delta_melanoma_roc_auc"] > 0 and no_ema["delta_melanoma_roc_auc_low"] > 0
    assert again["delta_balanced_accuracy_frequent"] == pytest.approx(0.0, abs=1e-9)  # the noise floor row
    assert np.isnan(base.get("delta_balanced_accuracy_frequent", np.nan)) and base["fold_seconds"] == 600
    (alone,) = groups[tuple({**SAME_FOLDS, "seed": "2"}.values())]
    assert list(ablation_table([alone], 10, 100, 0.95)["change"]) == ["(the only run on these folds)"]


def test_the_command_writes_the_table_and_names_a_missing_baseline(store, tmp_path, capsys):
    uri, client, ids = store
    out = tmp_path / "report"
    assert main(["--experiment", "m5", "--out", str(out), f"tracking.tracking_uri={uri}",
                 "study.bootstrap_samples=100"]) == 0
    text = (out / "ablation.md").read_text()
    assert "| optimizer.use_ema=false | 0.900 | +0.300 [" in text and "| baseline (replicate) |" in text
    assert set(pd.read_csv(out / "ablation.csv")["seed"]) == {1, 2}
    client.delete_run(ids["base"])
    client.delete_run(ids["again"])
    experiment = client.get_experiment_by_name("melanoma-study").experiment_id
    _parent(client, experiment, tmp_path, "no_cc", _oof(0.7, 5), {"override.dataset.colour_constancy_power": "null"})
    assert main(["--experiment", "m5", "--out", str(out), f"tracking.tracking_uri={uri}"]) == 1
    assert "no baseline among these runs" in capsys.readouterr().err


@pytest.mark.slow
def test_a_named_baseline_is_the_reference_and_other_runs_show_what_they_change_from_it(store, tmp_path, capsys):
    """After a recipe decision (colour constancy off) the next ingredient is ablated from the new recipe."""
    uri, client, ids = store
    experiment = client.get_experiment_by_name("melanoma-study").experiment_id
    cc_off = {"override.dataset.colour_constancy_power": "null"}
    no_cc = _parent(client, experiment, tmp_path, "no_cc", _oof(0.7, 5), cc_off)
    px144 = _parent(client, experiment, tmp_path, "px144", _oof(0.8, 6), {**cc_off, "override.dataset.image_size": "144"})
    groups = load_groups(client, "melanoma-study", "m5", baseline=("dataset.colour_constancy_power=null",))
    assert list(groups) == [tuple(SAME_FOLDS.values())]  # the seed-2 group has no such run: left out
    arms = groups[tuple(SAME_FOLDS.values())]
    assert [a.run_id for a in arms][:1] == [no_cc]
    table = ablation_table(arms, min_images=10, samples=200, confidence=0.95).set_index("run_id")
    assert table.loc[no_cc, "change"] == "baseline: dataset.colour_constancy_power=null"
    assert table.loc[px144, "change"] == "dataset.image_size=144"
    assert table.loc[px144, "delta_balanced_accuracy_frequent"] == pytest.approx(0.1, abs=0.01)
    assert table.loc[ids["base"], "change"] == "dataset.colour_constancy_power=(default)"
    assert table.loc[ids["no_ema"], "change"] == "dataset.colour_constancy_power=(default) optimizer.use_ema=false"

    out = tmp_path / "report"  # the flag's value looks like an override: it is the flag's, not conf/'s
    assert main(["--experiment", "m5", "--baseline", "dataset.colour_constancy_power=null", "--out", str(out),
                 f"tracking.tracking_uri={uri}", "study.bootstrap_samples=100"]) == 0
    assert "| dataset.image_size=144 | 0.800 | +0.100 [" in (out / "ablation.md").read_text()
    assert main(["--experiment", "m5", "--baseline", "+dataset.colour_constancy_power=null", "--out", str(out),
                 f"tracking.tracking_uri={uri}", "study.bootstrap_samples=100"]) == 0  # spelled as when appended
    assert main(["--experiment", "m5", "--baseline", "model.residual=false", f"tracking.tracking_uri={uri}"]) == 1
    assert "overrides exactly model.residual=false" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["--baseline", "residual", f"tracking.tracking_uri={uri}"])
    assert usage.value.code == 2 and "--baseline takes KEY=VALUE" in capsys.readouterr().err


def test_a_run_of_an_experiment_file_edited_since_is_not_a_replicate_it_shows_what_the_edit_changed(store, tmp_path):
    """m6.yaml gained dataset.colour_constancy_grey=0.68 between two runs with the same overrides: the newest is the
    baseline, the older one shows its own value of the key (absent: None), and a true replicate stays one."""
    import time

    uri, client, ids = store
    experiment = client.get_experiment_by_name("melanoma-study").experiment_id
    for run_id in (ids["base"], ids["again"], ids["no_ema"]):  # logged before the edit: no such key
        client.log_param(run_id, "dataset.colour_constancy_power", "6.0")
        client.log_param(run_id, "input_check/threshold", "9.3")  # not config (a model's settings, logged by MLflow)
    time.sleep(0.05)
    edited = _parent(client, experiment, tmp_path, "edited", _oof(0.7, 7), {})
    for key, value in (("dataset.colour_constancy_power", "6.0"), ("dataset.colour_constancy_grey", "0.68"),
                       ("study.cv_run_folds", "[1]")):  # where runs go is not a change
        client.log_param(edited, key, value)
    arms = load_groups(client, "melanoma-study", "m5")[tuple(SAME_FOLDS.values())]
    assert arms[0].run_id == edited and arms[0].changes == ()
    changes = {a.run_id: a.changes for a in arms}
    assert changes[ids["base"]] == changes[ids["again"]] == ("dataset.colour_constancy_grey=None",)
    assert changes[ids["no_ema"]] == ("optimizer.use_ema=false",)  # its own overrides: no newer run shares them
    table = ablation_table(arms, min_images=10, samples=200, confidence=0.95).set_index("run_id")
    assert table.loc[ids["base"], "delta_balanced_accuracy_frequent"] == pytest.approx(-0.1, abs=0.01)


@pytest.mark.parametrize("baseline", [["a=1", "a=2"], ["study.cv_run_folds=[1]"], ["=1"]])
def test_a_baseline_names_each_key_once_and_only_what_runs_compute(store, capsys, baseline):
    uri, _, _ = store
    with pytest.raises(SystemExit) as usage:
        main([arg for item in baseline for arg in ("--baseline", item)] + [f"tracking.tracking_uri={uri}"])
    assert usage.value.code == 2 and "--baseline" in capsys.readouterr().err


@pytest.mark.slow
def test_two_experiments_on_identical_folds_are_compared_with_the_first_as_reference_and_their_shift_drops(
        store, tmp_path):
    uri, client, ids = store
    experiment = client.get_experiment_by_name("melanoma-study").experiment_id
    tags = {"experiment": "m6", "override.experiment": "m6", "override.study.cv_run_folds": "[1,2]"}
    m6 = _parent(client, experiment, tmp_path, "m6", _oof(0.8, 5), tags)
    client.log_metric(m6, "oof_shift_worst_drop_colour_melanoma_roc_auc", 0.012)
    client.log_metric(m6, "oof_shift_worst_drop_colour_balanced_accuracy_frequent", 0.021)
    assert all(key[0] == "m5" for key in load_groups(client, "melanoma-study", "m5"))  # one experiment: as before

    groups = load_groups(client, "melanoma-study", ("m5", "m6"))
    (key,) = [k for k in groups if k[4] == "1"]  # seed 1: base, no_ema, again and m6
    table = ablation_table(groups[key], 10, 200, 0.95).set_index("change")
    assert table.loc["baseline: experiment=m5", "run_id"] == ids["base"]
    assert table.loc["experiment=m6", "delta_balanced_accuracy_frequent"] > 0
    assert table.loc["experiment=m6", "shift_worst_drop_colour_melanoma_roc_auc"] == pytest.approx(0.012)
    out = tmp_path / "both"
    assert main(["--experiment", "m5", "--experiment", "m6", "--out", str(out), f"tracking.tracking_uri={uri}"]) == 0
    text = (out / "ablation.md").read_text()
    assert "colour shift drop" in text and "| experiment=m6 |" in text and "+0.021 / +0.012" in text


def test_the_table_states_its_noise_floor_and_how_many_intervals_it_shows(store, tmp_path):
    """Issue 26 point 4: one training run per arm is not an effect's interval; the table says what its intervals
    cover, the baseline's repeat-run spread beside it, and the number of intervals read together."""
    from melanoma_lab.reporting.ablation_notes import ONE_RUN, noise_floor

    uri, client, ids = store
    out = tmp_path / "notes"
    assert main(["--experiment", "m5", "--out", str(out), f"tracking.tracking_uri={uri}",
                 "study.bootstrap_samples=100"]) == 0
    sections = (out / "ablation.md").read_text().split("## m5")[1:]
    seed1, seed2 = (next(text for text in sections if f"seed {seed}," in text) for seed in (1, 2))
    assert "Noise floor: the baseline config ran 2 times on these folds: balanced accuracy 0.600-0.600" in seed1
    assert "Multiplicity: 4 intervals at 95% each" in seed1 and "(Bonferroni), each would need 98.75%" in seed1
    assert "resampling images one by one (no split group logged" in seed1  # these runs logged no group
    assert "Noise floor from the baseline config on seeds 1, 2" in seed2  # its own folds: the other seed's baseline
    (alone,) = load_groups(client, "melanoma-study", "m5")[tuple({**SAME_FOLDS, "seed": "2"}.values())]
    assert noise_floor("k", {"k": ablation_table([alone], 10, 50, 0.95)}) == ONE_RUN


def test_differences_resample_the_split_groups_when_the_runs_logged_them():
    from melanoma_lab.reporting.ablation import paired_deltas

    groups = [f"lesion{i // 4}" for i in range(len(LABELS))]  # 4 images per lesion, scored alike below
    base, other = _oof(0.6, 0).assign(group=groups), _oof(0.9, 1).assign(group=groups)
    lesion_rows = np.arange(len(LABELS)) // 4 * 4  # every image scored as its lesion's first image
    for table in (base, other):
        table[[f"p_{c}" for c in CLASSES]] = table[[f"p_{c}" for c in CLASSES]].to_numpy()[lesion_rows]
    grouped = paired_deltas(base, other, 0, 10, 300, 0.95)
    images = paired_deltas(base.drop(columns="group"), other.drop(columns="group"), 0, 10, 300, 0.95)
    width = {name: d["delta_balanced_accuracy_frequent_high"] - d["delta_balanced_accuracy_frequent_low"]
             for name, d in (("grouped", grouped), ("images", images))}
    assert width["grouped"] > 1.4 * width["images"]
    assert grouped["resampled"] == f"{len(LABELS) // 4} split groups of {len(LABELS)} images"


def test_a_recipe_cross_validated_in_pieces_is_pooled_to_meet_one_that_ran_every_fold(store, tmp_path, capsys):
    """m6 ran fold 1, then fold 2 (an override restating what its file sets by then), m5 both folds at once: with
    --pool-folds m6 stands as one parent of folds 1-2 beside m5 (alert recomputed over both parts, seconds per fold
    over all folds, the worst shift drop of its parts); without it the pieces meet nothing. A fold run twice: the
    newer run is pooled, the older stays on its own."""
    import time

    uri, client, ids = store
    experiment = client.get_experiment_by_name("melanoma-study").experiment_id
    fold = np.where(np.arange(len(LABELS)) % 2 == 0, 1, 2)
    full = _oof(0.8, 5).assign(fold=fold, alert_threshold=np.where(fold == 1, 0.5, 0.99))  # fold 2 alerts on none
    m6 = {"experiment": "m6", "override.experiment": "m6"}
    stale = _parent(client, experiment, tmp_path, "stale1", full[fold == 1], {**m6, "cv_run_folds": "1"})
    time.sleep(0.05)
    one = _parent(client, experiment, tmp_path, "fold1", full[fold == 1],
                  {**m6, "cv_run_folds": "1", "override.dataset.colour_constancy_grey": "0.68"})
    two = _parent(client, experiment, tmp_path, "fold2", full[fold == 2], {**m6, "cv_run_folds": "2"})
    client.log_metric(one, "cv_mean_run_seconds", 900.0)  # fold 2: 600
    client.log_metric(one, "oof_shift_worst_drop_colour_melanoma_roc_auc", 0.03)
    client.log_metric(two, "oof_shift_worst_drop_colour_melanoma_roc_auc", 0.01)
    seed1 = tuple({**SAME_FOLDS, "experiment": "m5+m6"}.values())
    apart = load_groups(client, "melanoma-study", ("m5", "m6"))[seed1]  # unpooled: each piece on its own fold's images
    assert {a.run_id for a in apart} == {ids["base"], ids["again"], ids["no_ema"], stale, one, two}
    row = ablation_table(apart, 10, 100, 0.95).set_index("run_id").loc[two]
    assert row["change"] == "experiment=m6 (folds 2)" and row["images"] == (fold == 2).sum()

    groups = load_groups(client, "melanoma-study", ("m5", "m6"), pool=True)
    table = ablation_table(groups[seed1], 10, 100, 0.95)
    pooled = table.set_index("run_id").loc[f"{one}+{two}"]
    assert pooled["change"] == "experiment=m6" and pooled["images"] == len(LABELS)  # the restated default is no change
    assert pooled["delta_balanced_accuracy_frequent"] == pytest.approx(0.2, abs=0.01)
    melanoma_fold1 = (LABELS == 0) & (fold == 1)
    right = np.zeros(len(LABELS), bool)
    right[np.flatnonzero(LABELS == 0)[:64]] = True  # _oof(0.8): p(melanoma) 0.85 on the first 80% of melanomas
    assert pooled["alert_sensitivity"] == pytest.approx((right & melanoma_fold1).sum() / (LABELS == 0).sum())
    assert pooled["fold_seconds"] == pytest.approx(750.0)
    assert pooled["shift_worst_drop_colour_melanoma_roc_auc"] == pytest.approx(0.03)
    alone = load_groups(client, "melanoma-study", "m6", pool=True)  # (no m5 on fold 1 alone to meet)
    assert [[a.run_id for a in arms] for arms in alone.values()] == [[f"{one}+{two}", stale]]  # stale: on fold 1

    out = tmp_path / "pooled"
    assert main(["--experiment", "m5", "--experiment", "m6", "--pool-folds", "--out", str(out),
                 f"tracking.tracking_uri={uri}", "study.bootstrap_samples=50", "--record-decision", "m6 kept"]) == 0
    text = (out / "ablation.md").read_text()
    assert f"| {one[:8]}+{two[:8]} |" in text and "pooled (--pool-folds)" in text
    assert {client.get_run(r).data.tags.get("informed_decision") for r in (one, two, stale)} == {"m6 kept"}
    assert "informed_decision" not in client.get_run(ids["other_seed"]).data.tags  # alone on its folds: not compared


def test_an_arm_run_on_fewer_folds_is_compared_with_the_reference_on_its_own_folds_images(store, tmp_path, capsys):
    """The usual ablation of a slow recipe: the reference cross-validated on folds 1-2, an arm on fold 1 only. The arm
    meets the reference in one group, its difference paired on fold 1's images (what it would be against the
    reference's fold 1 alone); a rerun of the reference on fold 2 is no replicate for the noise floor (other images);
    a run on folds no other run holds all of (fold 3) stays apart."""
    uri, client, ids = store
    experiment = client.get_experiment_by_name("melanoma-study").experiment_id
    fold = np.where(np.arange(len(LABELS)) % 2 == 0, 1, 2)
    arm = _parent(client, experiment, tmp_path, "arm", _oof(0.9, 7)[fold == 1],
                  {"cv_run_folds": "1", "override.model.dropout": "0.5", "override.study.cv_run_folds": "[1]"})
    rerun = _parent(client, experiment, tmp_path, "rerun", _oof(0.6, 8)[fold == 2], {"cv_run_folds": "2"})
    third = _parent(client, experiment, tmp_path, "third", _oof(0.7, 9)[fold == 1], {"cv_run_folds": "3"})
    groups = load_groups(client, "melanoma-study", "m5")
    arms = groups[tuple(SAME_FOLDS.values())]
    assert arms[0].run_id == ids["base"] and {a.run_id for a in arms} == {
        ids["base"], ids["again"], ids["no_ema"], arm, rerun}
    assert [a.run_id for a in groups[tuple({**SAME_FOLDS, "cv_run_folds": "3"}.values())]] == [third]
    table = ablation_table(arms, 10, 200, 0.95).set_index("run_id")
    assert table.loc[arm, "change"] == "model.dropout=0.5 (folds 1)" and table.loc[arm, "images"] == (fold == 1).sum()
    base_on_fold1 = _oof(0.6, 0)[fold == 1]
    expected = paired_deltas(base_on_fold1, _oof(0.9, 7)[fold == 1], 0, 10, 200, 0.95)
    assert table.loc[arm, "delta_melanoma_roc_auc"] == pytest.approx(expected["delta_melanoma_roc_auc"])
    assert table.loc[arm, "delta_balanced_accuracy_frequent"] == pytest.approx(
        expected["delta_balanced_accuracy_frequent"])
    assert table.loc[rerun, "change"] == "baseline (replicate) (folds 2)" and not table.loc[rerun, "same_folds"]

    out = tmp_path / "fewer"
    assert main(["--experiment", "m5", "--out", str(out), f"tracking.tracking_uri={uri}",
                 "study.bootstrap_samples=50"]) == 0
    text = (out / "ablation.md").read_text()
    assert "| model.dropout=0.5 (folds 1) |" in text and "ran other folds than the baseline" in text
    assert "the baseline config ran 2 times on these folds" in text  # base and "again", not the fold-2 rerun

    # named as the reference, the fold-1 arm is the baseline: a run on more folds is scored on fold 1's images only
    # (its alert recomputed there, its whole-CV shift drops left out), and a decision is recorded on fold 1's runs
    client.log_metric(ids["base"], "oof_shift_worst_drop_colour_melanoma_roc_auc", 0.05)
    arms = load_groups(client, "melanoma-study", "m5", baseline=("model.dropout=0.5",))[tuple(SAME_FOLDS.values())]
    assert arms[0].run_id == arm
    wide = ablation_table(arms, 10, 50, 0.95).set_index("run_id").loc[ids["base"]]
    assert wide["images"] == (fold == 1).sum() and np.isnan(wide["alert_sensitivity"])  # no thresholds logged
    drop = "shift_worst_drop_colour_melanoma_roc_auc"
    assert drop not in wide or np.isnan(wide[drop])
    assert wide["balanced_accuracy_frequent"] == pytest.approx(
        ablation_table([arms[0]], 10, 50, 0.95)["balanced_accuracy_frequent"].iloc[0] - 0.3, abs=0.05)
    assert main(["--experiment", "m5", "--baseline", "model.dropout=0.5", "--out", str(out),
                 f"tracking.tracking_uri={uri}", "study.bootstrap_samples=50", "--record-decision", "dropout"]) == 0
    tagged = {r for r in (*ids.values(), arm, rerun, third) if client.get_run(r).data.tags.get("informed_decision")}
    assert tagged == {arm}  # the runs on folds 1-2 were compared on fold 1's images only


def _piece(run_id: str, folds: str, start: int, seconds: float = 600.0, **tags):
    """A stand-in CV parent of m6 seed 1 on ``folds`` (what pool_parents reads of an MLflow run)."""
    from types import SimpleNamespace

    return SimpleNamespace(info=SimpleNamespace(run_id=run_id, start_time=start), data=SimpleNamespace(
        tags={"experiment": "m6", "cv_folds": "5", "nested": "true", "seed": "1", "data_fingerprint": "abc",
              "calibration_fraction": "0.1", "cv_run_folds": folds, **tags},
        params={"dataset.melanoma_class": "melanoma"}, metrics={"cv_mean_run_seconds": seconds}))


def test_pooling_covers_the_most_folds_and_keeps_apart_what_is_not_one_split():
    from melanoma_lab.reporting.pooling import is_pooled, pool_parents

    fold = np.arange(len(LABELS)) % 5 + 1
    full = _oof(0.8, 0).assign(fold=fold, alert_threshold=0.5, group=[f"g{i}" for i in range(len(LABELS))])
    of = lambda folds: full[np.isin(fold, [int(f) for f in folds.split(",")])]  # noqa: E731
    config, overrides = (lambda r: r.data.params), (lambda r: {})
    # [1,2] and [3,4,5] cover the split; a newer rerun of fold 2 must not break that cover (newest-first did)
    pieces = [_piece("a", "1,2", 1, 900.0), _piece("b", "3,4,5", 2, 600.0), _piece("c", "2", 3)]
    tables = {"a": of("1,2"), "b": of("3,4,5"), "c": of("2")}
    pooled, apart = pool_parents(pieces, tables, config, overrides)
    assert is_pooled(pooled) and pooled.info.run_id == "a+b" and apart.info.run_id == "c"
    assert pooled.data.tags["cv_run_folds"] == "1,2,3,4,5" and len(pooled.oof) == len(LABELS)
    assert pooled.data.metrics["cv_mean_run_seconds"] == pytest.approx((2 * 900 + 3 * 600) / 5)  # per fold, not part
    assert pooled.data.metrics["oof_melanoma_alert_sensitivity"] == pytest.approx(0.8, abs=0.02)

    # a part without thresholds or groups: no alert (NaN thresholds would read as "never alerts"), no groups
    tables["b"] = of("3,4,5").drop(columns=["alert_threshold", "group"])
    (pooled, _) = pool_parents(pieces, tables, config, overrides)
    assert "oof_melanoma_alert_sensitivity" not in pooled.data.metrics
    assert {"alert_threshold", "group"}.isdisjoint(pooled.oof.columns)

    # another split (other calibration slice; or the same image in both parts): nothing pooled, nothing raised
    other = [_piece("a", "1,2", 1), _piece("b", "3,4,5", 2, calibration_fraction="0")]
    assert [r.info.run_id for r in pool_parents(other, tables, config, overrides)] == ["a", "b"]
    tables["b"] = pd.concat([of("3,4,5"), of("1").head(1)])
    assert [r.info.run_id for r in pool_parents(pieces[:2], tables, config, overrides)] == ["a", "b"]


def test_a_parent_without_the_calibration_slice_is_not_on_the_same_folds(store, tmp_path):
    """A calibration slice held out before the folds changes every fold: same seed and folds, other images."""
    uri, client, ids = store
    experiment = client.get_experiment_by_name("melanoma-study").experiment_id
    whole = _parent(client, experiment, tmp_path, "whole", _oof(0.7, 8), {"calibration_fraction": "0"})
    groups = load_groups(client, "melanoma-study", "m5")
    assert [a.run_id for a in groups[tuple({**SAME_FOLDS, "calibration_fraction": "0"}.values())]] == [whole]
    assert whole not in {a.run_id for a in groups[tuple(SAME_FOLDS.values())]}
