"""External evaluation: a model trained on one dataset scored on another, with a class map and unknown classes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from melanoma_lab.evaluation import plots
from melanoma_lab.data.sources import load_catalog
from melanoma_lab.errors import UserError
from melanoma_lab.study.external import map_labels, run_evaluation
from melanoma_lab.study.experiment import run_experiment
from melanoma_lab.tracking.store import tracking_uri
from tests.conftest import TINY_DATA, TINY_RUN, compose_config
from tests.manifest_fixtures import ham_root  # noqa: F401 (fixture)


def _evaluation_run(store: Path, name: str):
    client = mlflow.tracking.MlflowClient(tracking_uri(None, store))
    runs = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id],
                              f"attributes.run_name = '{name}'")
    assert len(runs) == 1
    return client, runs[0]


def _table(client, run, path: str) -> pd.DataFrame:
    return pd.read_csv(client.download_artifacts(run.info.run_id, path))


@pytest.mark.slow
def test_an_isic_layout_model_is_scored_on_ham10000_through_a_class_map(trained_model, ham_root, tmp_path):
    uri, source, _, store = trained_model  # tiny m2 on the synthetic ISIC-layout set (9 ISIC class names)
    result = subprocess.run([sys.executable, "-m", "melanoma_lab", "evaluate", f"model_uri={uri}", "dataset=ham10000",
                             f"dataset.root={ham_root}", "class_map=ham10000_to_isic9", f"paths.root_dir={tmp_path}"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    client, run = _evaluation_run(store, "evaluate-ham10000")
    assert run.info.status == "FINISHED"
    assert run.data.tags["source_run_id"] == source.info.run_id and run.data.tags["source_model_uri"] == uri
    metadata = pd.read_csv(ham_root / "HAM10000_metadata.csv")
    assert run.data.metrics["eval_images"] == len(metadata) and run.data.metrics["eval_unknown_class_images"] == 0
    for key in ("eval_balanced_accuracy", "eval_melanoma_roc_auc", "eval_melanoma_sensitivity", "eval_ece"):
        assert np.isfinite(run.data.metrics[key])
    predictions = _table(client, run, "evaluation/eval_predictions.csv")
    classes = json.loads(Path(client.download_artifacts(run.info.run_id, "evaluation/eval_confusion_matrix.json"))
                         .read_text())["classes"]
    melanoma = classes.index("melanoma")  # HAM10000's 'mel' images are the model's melanoma class
    assert (predictions["label"] == melanoma).sum() == (metadata["dx"] == "mel").sum()
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/eval_roc_curves.png", "evaluation/eval_reliability.png", "evaluation/unknown_classes.csv",
            "evaluation/unknown_class_counts.json", "evaluation/eval_per_class.csv"} <= artifacts
    assert _table(client, run, "evaluation/unknown_classes.csv").empty


@pytest.fixture(scope="module")
def ham_model(ham_root, tmp_path_factory):
    """A tiny m2 trained on the HAM10000 fixture: (model URI, source run, store folder)."""
    root = tmp_path_factory.mktemp("ham_model")
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # set by an earlier test's in-process run (mlflow.set_tracking_uri)
    cfg = compose_config(["experiment=m2", "dataset=ham10000", f"dataset.root={ham_root}", *TINY_RUN,
                          "dataset.image_size=32", "dataset.batch_size=16"], root=root)
    run_experiment(cfg, root / "run")
    client = mlflow.tracking.MlflowClient(tracking_uri(None, root / "mlruns"))
    (run,) = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])
    return f"runs:/{run.info.run_id}/model", run, root / "mlruns"


def _evaluate_on_synthetic(ham_model, tmp_path, shared_cache, *extra):
    uri, _, store = ham_model
    cfg = compose_config([f"model_uri={uri}", *TINY_DATA, f"paths.cache_dir={shared_cache}",
                          f"paths.mlruns_dir={store}", *extra], root=tmp_path, config_name="evaluate")
    return cfg, run_evaluation(cfg, tmp_path / "out")


@pytest.mark.slow
def test_a_ham10000_model_on_the_isic_layout_set_reports_the_class_it_does_not_know(ham_model, tmp_path,
                                                                                     shared_cache):
    cfg, metrics = _evaluate_on_synthetic(ham_model, tmp_path, shared_cache, "class_map=isic9_to_ham10000")
    files = load_catalog(cfg.dataset).files
    scc = int((files["label"] == "squamous cell carcinoma").sum())  # no HAM10000 class: not scored
    assert scc > 0 and metrics["eval_unknown_class_images"] == scc
    assert metrics["eval_images"] + scc == len(files) and np.isfinite(metrics["eval_melanoma_roc_auc"])
    client, run = _evaluation_run(ham_model[2], "evaluate-synthetic")
    assert run.info.status == "FINISHED" and run.data.tags["source_run_id"] == ham_model[1].info.run_id
    assert run.data.metrics["eval_unknown_class_images"] == scc
    listed = _table(client, run, "evaluation/unknown_classes.csv")
    assert set(listed["label"]) == {"squamous cell carcinoma"} and len(listed) == scc
    counts = json.loads(Path(client.download_artifacts(run.info.run_id, "evaluation/unknown_class_counts.json"))
                        .read_text())
    assert counts == {"squamous cell carcinoma": scc}


def test_without_a_class_map_no_known_class_is_a_user_error_naming_class_map(ham_model, tmp_path, shared_cache):
    with pytest.raises(UserError, match="class_map"):
        _evaluate_on_synthetic(ham_model, tmp_path, shared_cache)


def test_map_labels_renames_and_sets_aside_unknown_labels():
    files = pd.DataFrame({"path": ["a", "b", "c"], "label": ["mel", "nv", "scc"]})
    known, unknown = map_labels(files, {"mel": "melanoma", "nv": "nevus"}, ["melanoma", "nevus"])
    assert known["label"].tolist() == ["melanoma", "nevus"] and unknown.to_dict("records") == [
        {"path": "c", "label": "scc", "mapped_label": "scc"}]


def test_the_roc_figure_draws_the_melanoma_class_bold():
    labels, probabilities = np.array([0, 1, 0, 1]), np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    figure = plots.roc_curves(labels, probabilities, ["nv", "mel"], highlight="mel")
    widths = {line.get_label(): line.get_linewidth() for line in figure.axes[0].lines}
    assert widths["mel"] > widths["nv"]


@pytest.mark.slow
def test_evaluate_scores_exactly_as_the_run_did_with_colour_constancy_and_dihedral_views(tiny_cfg, tmp_path):
    """The one prediction path: an external evaluation of a model on its own Test split reproduces the run's
    test_predictions.csv, colour correction and the 8 views included."""
    overrides = ("experiment=m2", "trainer.epochs=1", "dataset.colour_constancy_power=6", "evaluation.tta=dihedral")
    trained = tiny_cfg(*overrides)
    run_experiment(trained, tmp_path / "run")
    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    (run,) = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])
    cfg = compose_config([f"model_uri=runs:/{run.info.run_id}/model", *TINY_DATA, "split=test",
                          f"paths.cache_dir={trained.paths.cache_dir}", "shift_check=true",
                          "evaluation.shift_tta=dihedral", "evaluation.shifts.quality=null"], root=tmp_path,
                         config_name="evaluate")
    metrics = run_evaluation(cfg, tmp_path / "eval")
    assert {"eval_shift_worst_drop_colour_melanoma_roc_auc", "eval_shift_warm_melanoma_alert_sensitivity",
            "eval_shift_worst_drop_intensity_melanoma_roc_auc"} <= set(metrics)
    assert not any("quality" in key for key in metrics)
    client, evaluation = _evaluation_run(tmp_path / "mlruns", cfg.name)
    ours = _table(client, evaluation, "evaluation/eval_predictions.csv").set_index("path").sort_index()
    theirs = _table(client, run, "evaluation/test_predictions.csv").set_index("path").sort_index()
    columns = [c for c in theirs.columns if c.startswith("p_")]
    assert list(ours.index) == list(theirs.index)
    assert np.abs(ours[columns].to_numpy() - theirs[columns].to_numpy()).max() <= 1e-4
    (scored,) = evaluation.inputs.dataset_inputs  # lineage: the evaluated images
    assert [t.value for t in scored.tags] == ["evaluation"] and scored.dataset.name == "synthetic-evaluation"
    table = _table(client, evaluation, "evaluation/eval_shift_check.csv")  # unshifted, with the same 8 views
    assert table.loc[0, "shift"] == "none" and table.loc[0, "melanoma_roc_auc"] == pytest.approx(
        metrics["eval_melanoma_roc_auc"], abs=1e-6)
    assert metrics["eval_shift_worst_drop_colour_melanoma_roc_auc"] == pytest.approx(
        table.loc[table["family"] == "colour", "drop_melanoma_roc_auc"].max())


def test_evaluate_reports_images_the_source_model_trained_on_and_scores_without_them(trained_model, tmp_path):
    """Issue 26, point 6: an external set holding three of the source run's training images byte for byte and two
    turned (re-encoded) is audited against the run's training fingerprints: they are listed, counted, and the
    clean metrics leave them out beside the full ones."""
    from PIL import Image

    from melanoma_lab.data.synthetic import ISIC_CLASSES, generate

    uri, source, _, store = trained_model
    client = mlflow.tracking.MlflowClient(tracking_uri(None, store))
    fingerprints = pd.read_csv(client.download_artifacts(source.info.run_id, "data/training_fingerprints.csv"))
    training = fingerprints.loc[fingerprints["context"] == "training", "path"].tolist()[:5]
    root = generate(tmp_path / "external", ISIC_CLASSES, 40, 0, 32, seed=41)  # lesions the model never saw
    planted = {}
    for n, path in enumerate(training):
        copy = root / "Train" / Path(path).parent.name / f"planted{n}.jpg"
        if n < 3:
            copy.write_bytes(Path(path).read_bytes())
        else:
            with Image.open(path) as image:
                image.transpose([Image.Transpose.ROTATE_270, Image.Transpose.TRANSVERSE][n - 3]).save(copy, quality=90)
        planted[str(copy)] = (path, "identical" if n < 3 else "rotated")
    cfg = compose_config([f"model_uri={uri}", "dataset=isic9", f"dataset.root={root}", "dataset.image_size=32",
                          f"paths.mlruns_dir={store}"], root=tmp_path, config_name="evaluate")
    metrics = run_evaluation(cfg, tmp_path / "out")

    client, run = _evaluation_run(store, cfg.name)
    overlap = _table(client, run, "evaluation/eval_training_overlap.csv")
    found = {(p, t, m) for p, t, m in zip(overlap["path"], overlap["training_path"], overlap["match"])}
    assert {(copy, path, match) for copy, (path, match) in planted.items()} <= found
    assert set(overlap["path"]) == set(planted)  # the lesions the model never saw are not flagged
    assert run.data.tags["training_overlap"] == "checked"
    assert metrics["eval_training_overlap_images"] == 5 and metrics["eval_clean_images"] == metrics["eval_images"] - 5
    for key in ("eval_balanced_accuracy", "eval_clean_balanced_accuracy", "eval_clean_melanoma_roc_auc"):
        assert np.isfinite(run.data.metrics[key])
    predictions = _table(client, run, "evaluation/eval_predictions.csv")
    assert set(predictions.loc[predictions["train_twin"], "path"]) == set(planted)


def test_a_fold_ensembles_training_fingerprints_are_read_from_the_fold_runs_under_it(tmp_path):
    """A CV parent trains nothing itself: the fingerprints of its model are those its fold runs logged."""
    from melanoma_lab.study.external_audit import source_fingerprints, training_overlap

    uri = tracking_uri(None, tmp_path / "mlruns")
    client = mlflow.tracking.MlflowClient(uri)
    experiment = client.create_experiment("melanoma-study", artifact_location=str(tmp_path / "artifacts"))
    parent = client.create_run(experiment).info.run_id
    for fold, distance in enumerate((4, 2)):
        child = client.create_run(experiment, tags={"mlflow.parentRunId": parent}).info.run_id
        client.log_param(child, "audit.near_duplicate_distance", distance)
        client.log_text(child, f"path,context,sha256,phash\n/f{fold}.jpg,training,{fold}{'0' * 63},{'f' * 16}\n",
                        "data/training_fingerprints.csv")
    found = sorted(source_fingerprints(uri, parent), key=lambda item: item[1])
    assert [(table["path"].tolist(), distance) for table, distance in found] == [(["/f1.jpg"], 2), (["/f0.jpg"], 4)]
    unchecked = training_overlap(uri, client.create_run(experiment).info.run_id, pd.DataFrame(columns=["path"]))
    assert not unchecked.checked and "logged no data/training_fingerprints.csv" in unchecked.note
