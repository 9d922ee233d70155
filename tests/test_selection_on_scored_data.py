"""Issue 26, point 2: selection on the scored data. Sweeps optimise inner validation, the study report scores the
final recipe without the images a recipe decision was read from, and promote says which of the winner's numbers
did not pick it (synthetic runs and predictions: no training)."""

from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from melanoma_lab.cli import ablation as ablation_command
from melanoma_lab.reporting.render import write_report
from melanoma_lab.reporting.selection import load_study
from melanoma_lab.serving import promote as room
from melanoma_lab.tracking.store import tracking_uri
from tests.conftest import compose_config

DECISION_TAG = "informed_decision"
CLASSES = ["melanoma", "nevus", "other"]
LABELS = np.tile([0, 1, 2], 100)  # 300 images, 60 per fold
FOLDS = np.repeat([1, 2, 3, 4, 5], 60)
DECIDED = FOLDS == 1  # the ablation's fold


# --- sweeps ---------------------------------------------------------------------------------------------------

NESTED_CV = {"cv_mean_val_balanced_accuracy": 0.55, "cv_mean_val_balanced_accuracy_frequent": 0.58,
             "cv_mean_fold_balanced_accuracy": 0.70, "oof_balanced_accuracy_frequent": 0.69}


@pytest.mark.parametrize("choice, expected", [((), 0.58), (("study.sweep_objective=fold",), 0.70)])
def test_a_sweep_optimises_inner_validation_over_the_frequent_classes_unless_told(tmp_path, monkeypatch, choice,
                                                                                 expected):
    from melanoma_lab.cli import train as train_command
    from melanoma_lab.study import crossval

    monkeypatch.setattr(crossval, "run_cross_validation", lambda *args, **kwargs: dict(NESTED_CV))
    monkeypatch.setattr(train_command, "parent_run_id", lambda: None)  # not inside a Hydra job here
    cfg = compose_config(["experiment=m1", "study.cv_folds=5", *choice], tmp_path)
    assert train_command.train(cfg, tmp_path, []) == pytest.approx(expected)


@pytest.mark.slow
def test_a_nested_cross_validation_returns_its_inner_validation_score_over_the_frequent_classes(tiny_cfg, tmp_path,
                                                                                                 monkeypatch):
    from melanoma_lab.cli import train as train_command

    monkeypatch.setattr(train_command, "parent_run_id", lambda: None)  # not inside a Hydra job here
    cfg = tiny_cfg("experiment=m1", "study.cv_folds=2", "tracking.log_model=false", "imbalance=none",
                   "study.shift_check=false")
    objective = train_command.train(cfg, tmp_path / "cv", [])
    client = MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    runs = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])
    (parent,) = [r for r in runs if "fold" not in r.data.tags]
    folds = [r for r in runs if "fold" in r.data.tags]
    assert objective == pytest.approx(parent.data.metrics["cv_mean_val_balanced_accuracy_frequent"])
    assert objective == pytest.approx(np.mean([r.data.metrics["val_balanced_accuracy_frequent"] for r in folds]))
    assert all("fold_balanced_accuracy_frequent" in r.data.metrics for r in folds)  # the same fixed classes


def test_the_objective_falls_back_to_what_a_run_logged():
    from melanoma_lab.study.objective import sweep_objective

    single = {"val_balanced_accuracy": 0.61, "test_balanced_accuracy": 0.5}
    assert sweep_objective(single, "val", cross_validated=False) == 0.61
    assert sweep_objective(single, "fold", cross_validated=False) == 0.61  # no outer fold: validation is scored
    assert sweep_objective({}, "val", cross_validated=True) is None


# --- the study report -----------------------------------------------------------------------------------------

def _oof(correct: np.ndarray, paths: np.ndarray | None = None) -> pd.DataFrame:
    """Out-of-fold predictions right where ``correct``, else the next class."""
    predicted = np.where(correct, LABELS, (LABELS + 1) % 3)
    table = pd.DataFrame(np.eye(3)[predicted] * 0.8 + 0.2 / 3, columns=[f"p_{c}" for c in CLASSES])
    table.insert(0, "alert_threshold", 0.5)
    table.insert(0, "fold", FOLDS)
    table.insert(0, "label", LABELS)
    table.insert(0, "path", [f"Train/{i:04d}.jpg" for i in range(len(LABELS))])
    return table if paths is None else table[np.isin(table["path"], paths)]


def _cv_parent(client, experiment_id, tmp_path, name, oof, tags):
    run = client.create_run(experiment_id, run_name=name, tags={"experiment": "m5", "cv_folds": "5", "nested": "true",
                                                                 "data_fingerprint": "abc", **tags})
    client.log_param(run.info.run_id, "dataset.melanoma_class", "melanoma")
    folder = tmp_path / "upload" / run.info.run_id
    folder.mkdir(parents=True)
    oof.to_csv(folder / "oof_predictions.csv", index=False)
    client.log_artifact(run.info.run_id, str(folder / "oof_predictions.csv"))
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


@pytest.fixture
def study_store(tmp_path):
    """An ablation on fold 1 of seed 1 (baseline and one change), and the study's final m5 over all 5 folds of
    seeds 1 and 2, right on every image of fold 1 (where the recipe was chosen) and on half of the others."""
    client = MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    experiment_id = client.create_experiment("melanoma-study", artifact_location=str(tmp_path / "artifacts"))
    ablation = {"seed": "1", "cv_run_folds": "1", "override.experiment": "m5"}
    fold_1 = _oof(np.ones(len(LABELS), bool))["path"][DECIDED].to_numpy()
    arms = [_cv_parent(client, experiment_id, tmp_path, "base", _oof(DECIDED, fold_1), ablation),
            _cv_parent(client, experiment_id, tmp_path, "ema", _oof(DECIDED, fold_1),
                       ablation | {"override.optimizer.use_ema": "false"})]
    half = DECIDED | (np.arange(len(LABELS)) % 2 == 0)
    study = {"launched_by": "study", "cv_run_folds": "1,2,3,4,5"}
    final = [_cv_parent(client, experiment_id, tmp_path, f"m5-seed{seed}", _oof(half), study | {"seed": str(seed)})
             for seed in (1, 2)]
    return client, arms, final


def test_the_report_scores_the_final_recipe_without_the_images_a_decision_was_taken_on(study_store, tmp_path,
                                                                                         capsys):
    client, arms, final = study_store
    before = write_report(load_study(client, "melanoma-study"), tmp_path / "before", samples=100).read_text()
    section = before.split("## Selection on the scored data")[1].split("\n## ")[0]
    assert "No run of this study is tagged `informed_decision`" in section  # the numbers may be optimistic
    assert ablation_command.main(["--experiment", "m5", "--out", str(tmp_path / "ablation"), "study.bootstrap_samples=100",
                                  f"paths.mlruns_dir={tmp_path / 'mlruns'}", "--record-decision",
                                  "m5: use_ema kept"]) == 0
    assert "tagged 2 of 2 runs" in capsys.readouterr().out
    assert {client.get_run(run).data.tags[DECISION_TAG] for run in arms} == {"m5: use_ema kept"}
    assert client.get_run(final[0]).data.tags.get(DECISION_TAG) is None  # the study's own runs are not tagged
    study = load_study(client, "melanoma-study")
    text = write_report(study, tmp_path / "after", samples=100).read_text()
    section = text.split("## Selection on the scored data")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| m5")]
    assert len(rows) == 2  # both seeds: the decision images are matched by path, whatever the folds
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert cells[:6] == ["m5", "1", "300", "60", "1", "m5: use_ema kept"]
    assert float(cells[6]) == pytest.approx(0.6) and float(cells[7]) == pytest.approx(0.5)  # with / without
    assert "No run of this study is tagged" not in text
    # recorded again: the tag is not repeated; another decision is added to it
    assert ablation_command.main(["--experiment", "m5", "--out", str(tmp_path / "ablation"), "study.bootstrap_samples=100",
                                  f"paths.mlruns_dir={tmp_path / 'mlruns'}", "--record-decision",
                                  "m5: use_ema kept"]) == 0
    assert "tagged 0 of 2 runs" in capsys.readouterr().out


# --- promote --------------------------------------------------------------------------------------------------

class Recording:
    """The store's client, recording what promote writes to the registry (no model is registered here)."""

    def __init__(self, client):
        self.client, self.tags, self.description = client, {}, None

    def __getattr__(self, name):
        return getattr(self.client, name)

    def set_model_version_tag(self, name, version, key, value):
        self.tags[key] = value

    def update_model_version(self, name, version, description):
        self.description = description

    def set_registered_model_alias(self, name, alias, version):
        pass


@pytest.fixture
def candidates(tmp_path, monkeypatch):
    client = MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    experiment_id = client.create_experiment("s", artifact_location=str(tmp_path / "artifacts"))

    def run(val, **metrics):
        made = client.create_run(experiment_id, tags={"experiment": "m5"})
        for key, value in {"val_balanced_accuracy": val, **metrics}.items():
            client.log_metric(made.info.run_id, key, value)
        client.set_terminated(made.info.run_id, "FINISHED")
        return made.info.run_id

    monkeypatch.setattr(mlflow, "search_logged_models", lambda **kwargs: ["a model"])
    monkeypatch.setattr(mlflow.models, "get_model_info", lambda uri: SimpleNamespace(metadata={}))
    monkeypatch.setattr(mlflow, "register_model", lambda uri, name: SimpleNamespace(version="1"))
    return client, run


def test_promote_says_the_winners_score_is_optimistic_and_gives_its_numbers_on_other_images(candidates):
    client, run = candidates
    run(0.60, test_balanced_accuracy=0.58)
    winner = run(0.70, test_balanced_accuracy=0.61, test_melanoma_roc_auc=0.9)
    run(0.65)
    selection = room.best_run(client, "s", "val_balanced_accuracy")
    assert (selection.run_id, selection.candidates, selection.value) == (winner, 3, 0.70)
    recording = Recording(client)
    room.promote(recording, winner, selection)
    tags = recording.tags
    assert tags["selected_among"] == "3" and tags["selection_score"] == "0.7000"
    assert tags["selection_score_is"].startswith("optimistic") and "winner's curse" in tags["selection_score_is"]
    assert tags["independent_scores"] == "test_balanced_accuracy=0.610, test_melanoma_roc_auc=0.900"
    assert "## How it was chosen" in recording.description and "Test balanced accuracy 0.610" in recording.description


def test_promote_says_plainly_when_no_number_of_the_winner_is_on_other_images(candidates):
    client, run = candidates
    run(0.60)
    winner = run(0.70, final_val_accuracy=0.8)
    selection = room.best_run(client, "s", "val_balanced_accuracy")
    recording = Recording(client)
    room.promote(recording, winner, selection)
    assert recording.tags["independent_scores"].startswith("none: every number this run logged is on the images "
                                                           "it was picked by (val)")
    assert "No number of this run is on images that did not choose it" in recording.description
