"""Issue 13: the study report compares like with like (study-launched runs only, one per experiment and seed,
joined on seed and image path) with two-level bootstrap intervals, full vs clean Test, and the runtime header."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from melanoma_lab.reporting import tables
from melanoma_lab.reporting.render import write_report
from melanoma_lab.reporting.selection import Study, StudyRun, load_study
from melanoma_lab.reporting.statistics import bootstrap_interval, paired_difference
from melanoma_lab.tracking.store import tracking_uri

CLASSES = ["melanoma", "nevus", "other"]


def _table(labels, predicted, paths=None, twin=None) -> pd.DataFrame:
    table = pd.DataFrame(np.eye(3)[predicted], columns=[f"p_{c}" for c in CLASSES])
    table.insert(0, "label", labels)
    table.insert(0, "path", paths or [f"img{i}" for i in range(len(labels))])
    if twin is not None:
        table["train_twin"] = twin
    return table


def _noisy(labels, accuracy, rng):
    return np.where(rng.random(len(labels)) < accuracy, labels, (labels + 1) % 3)


@pytest.fixture
def labels():
    return np.random.default_rng(0).integers(0, 3, 200)


def test_identical_seeds_give_the_interval_of_one_seed(labels):
    predicted = _noisy(labels, 0.7, np.random.default_rng(1))
    one = bootstrap_interval({1: _table(labels, predicted)}, 300, 0.95, seed=7)
    three = bootstrap_interval({s: _table(labels, predicted) for s in (1, 2, 3)}, 300, 0.95, seed=7)
    assert three == pytest.approx(one, abs=1e-12)  # three copies of one run add no information


def test_seed_to_seed_spread_widens_the_interval(labels):
    rng = np.random.default_rng(2)
    same = {s: _table(labels, _noisy(labels, 0.7, np.random.default_rng(3))) for s in (1, 2, 3)}
    spread = {s: _table(labels, _noisy(labels, acc, rng)) for s, acc in zip((1, 2, 3), (0.45, 0.7, 0.95))}
    low, high = bootstrap_interval(same, 300, 0.95)
    spread_low, spread_high = bootstrap_interval(spread, 300, 0.95)
    assert spread_high - spread_low > 1.5 * (high - low)


def test_paired_difference_joins_on_seed_and_path_not_position(labels):
    rng = np.random.default_rng(4)
    a = {1: _table(labels, _noisy(labels, 0.4, rng)), 2: _table(labels, _noisy(labels, 0.9, rng))}
    # B is A, seeds listed in the other order and rows shuffled: no difference at all
    b = {2: a[2].sample(frac=1, random_state=0), 1: a[1].sample(frac=1, random_state=1)}
    same = paired_difference(a, b, 200, 0.95)
    assert same["delta"] == 0 and same["low"] == same["high"] == 0 and same["seeds"] == [1, 2]
    # seed lists that differ: only seed 2 is common
    c = {2: _table(labels, labels), 3: _table(labels, labels)}
    diff = paired_difference(a, c, 200, 0.95)
    assert diff["seeds"] == [2]
    assert diff["delta"] == pytest.approx(1 - tables.balanced_accuracy_of(a[2]))
    with pytest.raises(ValueError, match="seed that both"):
        paired_difference({1: a[1]}, {5: a[1]}, 10, 0.9)


def test_paired_difference_interval_includes_seed_spread(labels):
    rng = np.random.default_rng(5)
    a = {s: _table(labels, _noisy(labels, 0.6, np.random.default_rng(6))) for s in (1, 2, 3)}
    steady = {s: _table(labels, _noisy(labels, 0.8, np.random.default_rng(7))) for s in (1, 2, 3)}
    shaky = {s: _table(labels, _noisy(labels, acc, rng)) for s, acc in zip((1, 2, 3), (0.6, 0.8, 1.0))}
    steady_diff, shaky_diff = paired_difference(a, steady, 300, 0.95), paired_difference(a, shaky, 300, 0.95)
    assert steady_diff["low"] > 0
    assert shaky_diff["high"] - shaky_diff["low"] > 1.5 * (steady_diff["high"] - steady_diff["low"])


def test_class_means_skip_nan_recall():
    run = StudyRun("r", "m1", 1, {}, {"test_recall_melanoma": float("nan"), "test_recall_nevus": 0.5}, {}, {})
    study = Study("s", [run], CLASSES, None, "test", pd.DataFrame(), melanoma_class="melanoma")
    assert tables.class_recall(study, [run], ["melanoma", "nevus"]) == 0.5
    assert np.isnan(tables.class_recall(study, [run], ["melanoma"]))


def test_the_melanoma_columns_follow_the_datasets_melanoma_class(labels):
    """HAM10000 calls melanoma 'mel': the study's melanoma_class (from dataset.melanoma_class) picks the column."""
    table = _table(labels, labels).rename(columns={"p_melanoma": "p_nevus", "p_nevus": "p_mel"})
    run = StudyRun("r", "m1", 1, {}, {}, {}, {"test": table})
    found = tables.results_table(Study("s", [run], ["nevus", "mel", "other"], None, "test", pd.DataFrame(),
                                       melanoma_class="mel"), 100, 0.9)
    assert found.loc[0, "melanomas found (per seed)"] == f"{int((labels == 1).sum())}/{int((labels == 1).sum())}"
    unnamed = tables.results_table(Study("s", [run], ["nevus", "mel", "other"], None, "test", pd.DataFrame()), 100, 0.9)
    assert "melanomas found (per seed)" not in unnamed


# --- a study in a real MLflow store ---------------------------------------------------------------------

def _log_run(client, experiment_id, tmp_path, name, seed, test, tags=None, status="FINISHED"):
    run = client.create_run(experiment_id, run_name=name, tags={"experiment": name, "seed": str(seed),
                                                                 "config_hash": f"cfg-{name}", **(tags or {})})
    run_id = run.info.run_id
    folder = tmp_path / "upload" / run_id / "evaluation"
    folder.mkdir(parents=True)
    test.to_csv(folder / "test_predictions.csv", index=False)
    test.to_csv(folder / "val_predictions.csv", index=False)
    client.log_artifacts(run_id, str(folder), "evaluation")
    (folder.parent / "data_audit.json").write_text(json.dumps(AUDIT))
    client.log_artifact(run_id, str(folder.parent / "data_audit.json"))
    for step, (loss, val_loss) in enumerate([(1.0, 1.1), (0.8, 0.9)]):
        for key, value in {"loss": loss, "val_loss": val_loss, "accuracy": 0.5, "val_accuracy": 0.5}.items():
            client.log_metric(run_id, key, value, step=step)
    client.log_metric(run_id, "train_val_accuracy_gap", 0.05)
    client.log_param(run_id, "dataset.melanoma_class", "melanoma")  # every run logs its flattened config
    client.set_terminated(run_id, status=status)
    return run_id


AUDIT = {"root": "synthetic", "files": 200, "class_counts": {"train": {"melanoma": 5, "nevus": 9, "other": 7}},
         "imbalance_ratio": 1.8, "duplicate_groups": [], "label_conflicts": [], "cross_split_duplicates": [],
         "near_duplicate_groups": [], "unreadable_files": {}, "empty_class_folders": [], "unexpected_entries": []}
STUDY = {"launched_by": "study", "study_launch": "first", "code_version": "abc123", "runtime.device": "cpu: EPYC",
         "runtime.cpu_cores": "2", "runtime.keras_backend": "tensorflow"}


@pytest.fixture
def store(tmp_path, labels):
    client = MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    experiment_id = client.create_experiment("s", artifact_location=str(tmp_path / "artifacts"))
    twin = [i % 4 == 0 for i in range(len(labels))]
    rng = np.random.default_rng(8)
    for name, accuracy in (("m1", 0.5), ("m2", 0.8)):
        for seed in (1, 2):
            _log_run(client, experiment_id, tmp_path, name, seed, _table(labels, _noisy(labels, accuracy, rng),
                                                                          twin=twin), STUDY)
    return client, experiment_id


def _report(client, out):
    return write_report(load_study(client, "s"), out, samples=100).read_text()


@pytest.mark.slow
def test_ad_hoc_runs_do_not_change_the_report(store, tmp_path, labels):
    client, experiment_id = store
    before = _report(client, tmp_path / "before")
    _log_run(client, experiment_id, tmp_path, "m2", 1, _table(labels, labels))  # by hand: perfect, untagged
    assert _report(client, tmp_path / "after") == before
    assert "run_id" in before and len(load_study(client, "s").runs) == 4


def test_duplicates_and_superseded_runs_are_resolved_and_listed(store, tmp_path, labels):
    client, experiment_id = store
    older = load_study(client, "s")
    old_m2_seed1 = next(r.run_id for r in older.runs if (r.experiment, r.seed) == ("m2", 1))
    twin_id = _log_run(client, experiment_id, tmp_path, "m2", 1, _table(labels, labels), STUDY)
    newer = _log_run(client, experiment_id, tmp_path, "m1", 2, _table(labels, labels),
                     STUDY | {"study_launch": "second", "code_version": "def456"})
    failed = _log_run(client, experiment_id, tmp_path, "m1", 1, _table(labels, labels), STUDY, status="FAILED")
    study = load_study(client, "s")
    chosen = {(r.experiment, r.seed): r.run_id for r in study.runs}
    assert len(study.runs) == 4 and chosen[("m2", 1)] == twin_id and chosen[("m1", 2)] == newer
    reasons = dict(zip(study.dropped["run_id"], study.dropped["reason"]))
    assert reasons[old_m2_seed1].startswith(f"duplicate of newer run {twin_id}")
    assert "superseded by newer run " + newer in " ".join(reasons.values())
    assert reasons[failed] == "status FAILED"
    text = write_report(study, tmp_path / "out", samples=100).read_text()
    assert "## Runs left out" in text and old_m2_seed1 in text and "abc123, def456" in text


def test_report_shows_full_and_clean_test_and_the_hardware(store, tmp_path):
    client, _ = store
    text = _report(client, tmp_path / "out")
    clean = tables.full_and_clean_table(load_study(client, "s"), 100, 0.95)
    assert list(clean["full images"]) == ["200", "200"] and list(clean["clean images"]) == ["150", "150"]
    for needle in ("Full vs clean Test", "clean balanced acc", "clean melanoma AUC", "two-level",
                   "runtime.device", "cpu: EPYC", "tensorflow"):
        assert needle in text, needle
    assert re.search(r"\| runtime\.precision +\| not logged", text)


def test_clean_is_na_without_the_train_twin_column(tmp_path, labels):
    client = MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    experiment_id = client.create_experiment("s", artifact_location=str(tmp_path / "artifacts"))
    _log_run(client, experiment_id, tmp_path, "m1", 1, _table(labels, labels), STUDY)
    row = tables.full_and_clean_table(load_study(client, "s"), 100, 0.95).iloc[0]
    assert row["clean balanced acc"].startswith("n/a") and row["full balanced acc"] == "1.000 ± 0.000"


def test_experiments_with_different_test_sets_are_compared_on_the_intersection(tmp_path, labels):
    client = MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    experiment_id = client.create_experiment("s", artifact_location=str(tmp_path / "artifacts"))
    _log_run(client, experiment_id, tmp_path, "m1", 1, _table(labels, labels), STUDY)
    _log_run(client, experiment_id, tmp_path, "m2", 1, _table(labels[50:], labels[50:],
                                                               [f"img{i}" for i in range(50, 200)]), STUDY)
    text = _report(client, tmp_path / "out")
    assert "on the 150 test images both were scored on (their test sets differ: m1 has 200, m2 has 150)" in text


def test_a_run_adopted_by_the_study_counts_from_when_the_study_took_it(tmp_path, labels):
    """A run made by hand and adopted by a later study invocation (same identity) is that invocation's run: it
    wins over a run the study started earlier, and the report orders it where the study asked for it."""
    client = MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    experiment_id = client.create_experiment("s", artifact_location=str(tmp_path / "artifacts"))
    by_hand = _log_run(client, experiment_id, tmp_path, "m1", 1, _table(labels, labels), {"code_version": "new"})
    _log_run(client, experiment_id, tmp_path, "m2", 1, _table(labels, labels), STUDY)
    earlier = _log_run(client, experiment_id, tmp_path, "m1", 1, _table(labels, labels), STUDY)
    adopted = {"launched_by": "study", "study_launch": "second", "adopted_by_study": "second",
               "adopted_at_ms": str(client.get_run(earlier).info.start_time + 60_000)}
    for key, value in adopted.items():
        client.set_tag(by_hand, key, value)
    study = load_study(client, "s")
    assert [(r.experiment, r.run_id) for r in study.runs][-1] == ("m1", by_hand) and study.experiments == ["m2", "m1"]
    assert dict(zip(study.dropped["run_id"], study.dropped["reason"]))[earlier].startswith(
        f"superseded by newer run {by_hand}")


def test_study_warns_about_requested_runs_the_report_lacks(store):
    from melanoma_lab.study.runner import missing_runs

    client, _ = store
    assert missing_runs(["m1", "m2", "m3"], [1, 2], load_study(client, "s")) == [("m3", 1), ("m3", 2)]


def test_the_report_command_reads_and_writes_where_the_conf_overrides_say(store, tmp_path, monkeypatch, capsys):
    from melanoma_lab.cli import report

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the default store, ./mlruns, has no study here
    assert report.main(["--study", "s"]) == 1 and "no MLflow experiment" in capsys.readouterr().err
    assert report.main([f"paths.root_dir={tmp_path}", "study.name=s", "study.bootstrap_samples=50"]) == 0
    written = tmp_path / "experiments" / "reports" / "s" / "report.md"  # study.reports_dir of the same root
    assert written.is_file() and "| m2 " in written.read_text() and not (elsewhere / "experiments").exists()
