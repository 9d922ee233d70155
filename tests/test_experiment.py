"""End to end: one experiment trains, evaluates and leaves a complete MLflow run."""

import json
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest

from melanoma_lab.data.sources import load_catalog
from melanoma_lab.study.experiment import run_experiment
from melanoma_lab.serving.classifier import encode_image
from melanoma_lab.tracking.store import tracking_uri
from tests.conftest import EXPERIMENTS, TINY, TINY_AUGMENTOR, TINY_DATA, TINY_RUN, compose_config, data_recipe

EXPECTED_ARTIFACTS = {
    "config/config.yaml", "config/overrides.txt", "data_audit.json", "data_audit.txt", "learning_curves.png",
    "history.json", "data/class_distribution.png", "data/samples_per_class.png", "data/training_fingerprints.csv",
    "evaluation/val_confusion_matrix.png", "evaluation/test_confusion_matrix.png",
    "evaluation/val_per_class.csv", "evaluation/test_per_class.csv", "evaluation/val_roc_curves.png",
    "evaluation/val_reliability.png",
}


def _artifacts(client, run_id, path=None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


@pytest.mark.slow
def test_m3_smoke_leaves_one_finished_run_with_everything(tiny_cfg, tmp_path):
    cfg = tiny_cfg("experiment=m3", "trainer.epochs=2", *TINY_AUGMENTOR)
    results = run_experiment(cfg, tmp_path / "out", ["experiment=m3"])
    uri = tracking_uri(None, tmp_path / "mlruns")
    client = mlflow.tracking.MlflowClient(uri)
    experiment = client.get_experiment_by_name("melanoma-study")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == "m3"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [0, 1]
    for key in ("loss", "accuracy", "val_accuracy", "learning_rate", "epoch_seconds"):
        assert len(client.get_metric_history(run.info.run_id, key)) == 2
    # one name per metric: the 2 epochs' balanced accuracy, then the selected epoch's final evaluation after them
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_balanced_accuracy")][:2] == [0, 1]
    assert len(client.get_metric_history(run.info.run_id, "val_balanced_accuracy")) == 3
    for key in ("val_balanced_accuracy", "val_melanoma_sensitivity", "test_balanced_accuracy",
                "test_melanoma_roc_auc", "val_macro_f1", "val_ece"):
        assert key in run.data.metrics
    assert run.data.params["imbalance._target_"] == "melanoma_lab.components.imbalance.augmentor"
    assert run.data.params["model.dropout"] == "0.2"
    # the run's params are its config: the logged model's settings (classes, input check...) are not mixed in
    assert not {"classes", "image_size", "keras_backend"} & set(run.data.params)
    assert not [key for key in run.data.params if key.startswith("input_check")]
    costs = run.data.metrics  # what the run cost: wall seconds, of which in MLflow calls, and peak memory
    assert 0 < costs["tracking_seconds"] < costs["run_seconds"] and costs["process_peak_rss_mb"] > 100
    tags = run.data.tags
    assert len(tags["data_fingerprint"]) == 16 and tags["seed"] == "42" and tags["version.tensorflow-cpu"]
    assert {"git_commit", "git_dirty", "version.mlflow", "version.keras"} <= set(tags)
    assert EXPECTED_ARTIFACTS <= _artifacts(client, run.info.run_id)
    fingerprints = pd.read_csv(client.download_artifacts(run.info.run_id, "data/training_fingerprints.csv"), dtype=str)
    assert set(fingerprints["context"]) == {"training", "validation"}  # originals only: no Augmentor images
    assert fingerprints["phash"].str.len().eq(16).all() and not fingerprints["path"].str.contains("augmentor").any()
    assert results["final_val_accuracy"] == pytest.approx(run.data.metrics["final_val_accuracy"])
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["val_balanced_accuracy"] == results["val_balanced_accuracy"]
    assert (tmp_path / "out" / "audit.json").is_file()

    models = mlflow.search_logged_models(experiment_ids=[experiment.experiment_id], output_format="list")
    assert [m.source_run_id for m in models] == [run.info.run_id]
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(f"models:/{models[0].model_id}")
    assert model.metadata.metadata["classes"][3] == "melanoma" and model.metadata.metadata["image_size"] == 32
    settings = model.unwrap_python_model().settings  # loaded whole from the model's settings artifact
    assert settings.input_check is not None and settings.input_check.precision.shape[0] >= 2
    assert settings.classes == model.metadata.metadata["classes"]
    assert model.metadata.metadata["melanoma_alert_threshold"] == pytest.approx(
        run.data.metrics["val_melanoma_alert_threshold"])
    test_images = load_catalog(cfg.dataset).split("test")["path"][:3]
    table = model.predict(pd.DataFrame({"image": [encode_image(p) for p in test_images] + ["bm90IGFuIGltYWdl"]}))
    probabilities = table[model.metadata.metadata["classes"]].to_numpy()
    assert probabilities.shape == (4, 9) and np.allclose(probabilities[:3].sum(axis=1), 1, atol=1e-4)
    assert list(table["error"][:3]) == ["", "", ""] and "cannot read as an image" in table["error"][3]
    assert np.isnan(probabilities[3]).all() and not table["melanoma_alert"][3]


def test_a_crash_marks_the_run_failed(tiny_cfg, tmp_path, monkeypatch):
    import melanoma_lab.study.experiment as experiment

    def explode(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(experiment, "train_model", explode)
    with pytest.raises(RuntimeError, match="disk on fire"):
        run_experiment(tiny_cfg("tracking.log_model=false"), tmp_path / "out")
    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    run = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])[0]
    assert run.info.status == "FAILED" and "disk on fire" in run.data.tags["error"]


def test_cli_rejects_a_wrong_key_before_any_training(tmp_path):
    result = subprocess.run([sys.executable, "-m", "melanoma_lab", "experiment=m2", "model.dropoutt=0.3",
                             f"paths.root_dir={tmp_path}"], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "dropoutt" in result.stderr
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.slow
def test_cli_without_data_explains_the_two_ways_out(tmp_path):
    result = subprocess.run([sys.executable, "-m", "melanoma_lab", f"paths.root_dir={tmp_path}"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "make data" in result.stderr and "dataset=synthetic" in result.stderr
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.slow
def test_cli_trains_one_experiment(tmp_path, shared_cache):
    result = subprocess.run([sys.executable, "-m", "melanoma_lab", "experiment=m1", *TINY,
                             f"paths.cache_dir={shared_cache}", f"paths.root_dir={tmp_path}",
                             "tracking.log_model=false"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[m1] final_val_accuracy=" in result.stdout
    run_dirs = list((tmp_path / "experiments" / "runs" / "m1").iterdir())
    assert len(run_dirs) == 1 and (run_dirs[0] / ".hydra" / "config.yaml").is_file()
    assert (run_dirs[0] / "checkpoints" / "best.keras").is_file()


@pytest.mark.slow
def test_recipe_options_train_end_to_end(tiny_cfg, tmp_path):
    cfg = tiny_cfg("experiment=m4", "trainer.epochs=2", "dataset.image_size=32", "model.filters=[8,16]",
                   "tracking.log_model=false", "loss=focal", "lr_schedule=cosine",
                   "trainer.monitor=val_balanced_accuracy", "loss.label_smoothing=0.1", "trainer.precision=mixed_bfloat16")
    results = run_experiment(cfg, tmp_path / "out")
    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    run = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])[0]
    # the 2 epochs, then the final evaluation of the selected epoch under the same name (one name per metric)
    assert len(client.get_metric_history(run.info.run_id, "val_balanced_accuracy")) == 3
    rates = [m.value for m in client.get_metric_history(run.info.run_id, "learning_rate")]
    assert rates[1] < rates[0] < cfg.optimizer.learning_rate  # cosine decay
    assert 0 <= results["val_balanced_accuracy"] <= 1


@pytest.mark.slow
def test_synthetic_data_is_learnable_but_not_trivial(tmp_path, shared_cache):
    from tests.conftest import compose_config

    cfg = compose_config(["experiment=m1", "dataset=synthetic", "trainer.epochs=8", "tracking.enabled=false",
                          f"paths.cache_dir={shared_cache}"], root=tmp_path)
    results = run_experiment(cfg, tmp_path / "out")
    chance = 1 / 9
    assert 2 * chance < results["val_balanced_accuracy"] < 0.95
    assert 2 * chance < results["test_balanced_accuracy"] < 0.95


@pytest.mark.slow
def test_same_seed_gives_same_split_and_identical_metrics_when_deterministic(tiny_cfg, tmp_path):
    from melanoma_lab.study.preparation import load_audited_data, prepare_data

    def split_and_metrics(seed: int, name: str) -> tuple[list[str], dict]:
        cfg = tiny_cfg("experiment=m2", f"trainer.seed={seed}", "tracking.enabled=false", "trainer.epochs=2",
                       "trainer.deterministic=true")  # bfloat16 kernels are not bit-stable without it
        audited = load_audited_data(cfg.dataset, cfg.audit, tmp_path / name)
        paths = list(prepare_data(data_recipe(cfg), audited.catalog, audited.files).validation.files["path"])
        return paths, run_experiment(cfg, tmp_path / name, audited=audited)

    paths_a, metrics_a = split_and_metrics(7, "a")
    paths_b, metrics_b = split_and_metrics(7, "b")
    paths_c, _ = split_and_metrics(8, "c")
    assert paths_a == paths_b != paths_c
    for key in ("val_balanced_accuracy", "final_val_accuracy", "test_accuracy"):
        assert metrics_a[key] == pytest.approx(metrics_b[key], abs=1e-6), key


def _with_callback(monkeypatch, callback) -> None:
    """Append ``callback`` to every run's Keras callbacks."""
    import melanoma_lab.training.fit as training

    original = getattr(training.build_callbacks, "original", training.build_callbacks)
    patched = lambda *a, **k: original(*a, **k) + [callback]  # noqa: E731
    patched.original = original
    monkeypatch.setattr(training, "build_callbacks", patched)


def _ctrl_c_after(last_epoch: int):
    import keras

    class CtrlC(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == last_epoch:
                raise KeyboardInterrupt

    return CtrlC()


def _epoch_recorder():
    import keras

    class Epochs(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.trained: list[int] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.trained.append(epoch)

    return Epochs()


@pytest.mark.slow
def test_a_run_interrupted_without_the_resume_flag_continues_with_it(tiny_cfg, tmp_path, monkeypatch, caplog):
    """The README's promise: Ctrl-C, then the same command plus trainer.resume=true continues the same run."""
    _with_callback(monkeypatch, _ctrl_c_after(1))
    overrides = ("experiment=m1", "trainer.epochs=4", "tracking.log_model=false", "imbalance=none")
    with pytest.raises(KeyboardInterrupt):
        run_experiment(tiny_cfg(*overrides), tmp_path / "first")  # started WITHOUT trainer.resume
    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    experiment_id = client.get_experiment_by_name("melanoma-study").experiment_id
    (killed,) = client.search_runs([experiment_id])
    assert killed.info.status == "KILLED"
    assert [m.step for m in client.get_metric_history(killed.info.run_id, "val_loss")] == [0, 1]

    epochs = _epoch_recorder()
    _with_callback(monkeypatch, epochs)
    with caplog.at_level("WARNING"):
        run_experiment(tiny_cfg(*overrides, "trainer.resume=true"), tmp_path / "second")
    assert any(f"resuming run {killed.info.run_id}" in r.message for r in caplog.records)
    (run,) = client.search_runs([experiment_id])
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    assert epochs.trained == [2, 3]  # only the remaining epochs
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [0, 1, 2, 3]
    assert run.data.tags["resumed"] == "true"
    with open(client.download_artifacts(run.info.run_id, "history.json")) as handle:
        history = json.load(handle)
    assert len(history["loss"]) == 4


@pytest.mark.slow
def test_a_rerun_without_the_resume_flag_starts_over_and_says_so(tiny_cfg, tmp_path, monkeypatch, caplog):
    _with_callback(monkeypatch, _ctrl_c_after(0))
    overrides = ("experiment=m1", "trainer.epochs=2", "tracking.log_model=false", "imbalance=none")
    with pytest.raises(KeyboardInterrupt):
        run_experiment(tiny_cfg(*overrides), tmp_path / "first")
    epochs = _epoch_recorder()
    _with_callback(monkeypatch, epochs)
    with caplog.at_level("WARNING"):
        run_experiment(tiny_cfg(*overrides), tmp_path / "second")
    assert epochs.trained == [0, 1]  # the interrupted run's backup is not silently restored
    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    runs = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED", "KILLED"]
    (killed,) = [r for r in runs if r.info.status == "KILLED"]
    assert any(killed.info.run_id in r.message and "starting over" in r.message and "trainer.resume=true" in r.message
               for r in caplog.records)


def smoke_overrides(experiment: str) -> list[str]:
    """The tiny synthetic set, one epoch, and the tiny sizes of whichever plug-ins the experiment chose that take
    them (a CNN's filters, Augmentor's images per class): any experiment file trains in seconds."""
    tiny = [f"experiment={experiment}", *TINY_DATA, "trainer=smoke"]
    chosen = compose_config(tiny)
    sizes = [o for o in TINY_RUN[1:] if o.split("=")[0].split(".")[1] in chosen.model]
    sizes += [o for o in TINY_AUGMENTOR if o.split("=")[0].split(".")[1] in chosen.imbalance]
    phases = ["trainer.head_epochs=1", "trainer.epochs=2"] if _head_epochs(experiment) else []  # both phases run
    return tiny + sizes + phases + (["study.cv_folds=2"] if chosen.study.cv_folds > 1 else [])


def _head_epochs(experiment: str) -> int:
    """The head-only epochs the experiment file asks for (m6: a frozen-backbone phase before fine-tuning)."""
    return compose_config([f"experiment={experiment}"]).trainer.get("head_epochs", 0)


@pytest.mark.experiment_smoke
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_file_trains_a_smoke_run(experiment, tmp_path, shared_cache):
    """Every conf/experiment/*.yaml, found on disk (a new one is trained without writing a test), takes one epoch
    on the tiny synthetic set through the entry point's own choice of runner and leaves a FINISHED run."""
    from melanoma_lab.study.crossval import run_cross_validation

    cfg = compose_config([*smoke_overrides(experiment), f"paths.cache_dir={shared_cache}"], root=tmp_path)
    run = run_cross_validation if cfg.study.cv_folds > 1 else run_experiment
    results = run(cfg, tmp_path / "out", [f"experiment={experiment}"])
    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    runs = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])
    (top,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert top.info.status == "FINISHED" and top.data.tags["experiment"] == experiment
    assert all(r.info.status == "FINISHED" for r in runs)
    assert 0 <= results.get("val_balanced_accuracy", results.get("cv_mean_val_balanced_accuracy")) <= 1
    if _head_epochs(experiment):  # the frozen-backbone epoch, then the fine-tuning one, one curve
        assert len(client.get_metric_history(top.info.run_id, "loss")) == 2
