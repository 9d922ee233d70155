import os

import keras
import numpy as np
import pytest

from melanoma_lab.errors import ConfigError
from melanoma_lab.runtime import cpu_has_bfloat16, set_precision
from melanoma_lab.training.fit import ValidationMetrics, best_epoch, build_loss, learning_rate
from tests.conftest import compose_config, data_recipe, training_recipe


def test_validation_metrics_include_balanced_accuracy():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(loss="categorical_crossentropy")
    images = np.random.default_rng(0).normal(size=(12, 2)).astype(np.float32)
    labels = np.array([0] * 8 + [1] * 2 + [2] * 2)
    callback = ValidationMetrics(images, labels, 3, keras.losses.CategoricalCrossentropy(), 4, "none")
    callback.set_model(model)
    logs: dict = {}
    callback.on_epoch_end(0, logs)
    predicted = model.predict(images, verbose=0).argmax(axis=1)
    recalls = [np.mean(predicted[labels == c] == c) for c in range(3)]
    assert logs["val_balanced_accuracy"] == pytest.approx(np.mean(recalls))
    assert logs["val_accuracy"] == pytest.approx(np.mean(predicted == labels))
    assert logs["val_loss"] > 0


def test_best_epoch_follows_the_monitor_direction():
    history = {"val_loss": [1.0, 0.5, 0.7], "val_balanced_accuracy": [0.2, 0.3, 0.6]}
    assert best_epoch(history, "val_loss") == 1 and best_epoch(history, "val_balanced_accuracy") == 2


def test_loss_schedule_and_precision_come_from_config():
    cfg = compose_config(["loss=focal", "loss.label_smoothing=0.1", "loss.gamma=3", "lr_schedule=cosine",
                          "trainer.epochs=4", "optimizer.learning_rate=0.01"])
    loss = build_loss(cfg.loss)
    assert isinstance(loss, keras.losses.CategoricalFocalCrossentropy) and loss.label_smoothing == 0.1
    assert loss.gamma == 3
    schedule = learning_rate(training_recipe(cfg), steps_per_epoch=10)
    assert float(schedule(0)) == pytest.approx(0.01) and float(schedule(40)) == pytest.approx(0.0, abs=1e-7)
    assert learning_rate(training_recipe(compose_config(["optimizer.learning_rate=0.01"])), 10) == 0.01
    try:
        assert set_precision("mixed_bfloat16") == "mixed_bfloat16"
        assert keras.mixed_precision.global_policy().compute_dtype == "bfloat16"
        assert set_precision("auto") == ("mixed_bfloat16" if cpu_has_bfloat16() else "float32")
    finally:
        set_precision("float32")


def test_tta_averages_the_image_and_its_flips():
    from melanoma_lab.evaluation.inference import predict_probabilities

    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    images = np.random.default_rng(0).uniform(0, 255, (5, 4, 4, 3)).astype(np.float32)
    views = [images, images[:, :, ::-1], images[:, ::-1]]
    expected = np.mean([model.predict(v, verbose=0) for v in views], axis=0)
    assert np.allclose(predict_probabilities(model, images, 2, tta=True), expected, atol=1e-6)
    assert np.allclose(predict_probabilities(model, images, 2, tta=False), model.predict(images, verbose=0))


@pytest.mark.slow
def test_mirrored_strategy_trains_on_cpu(tiny_cfg, tmp_path):
    import tensorflow as tf

    from melanoma_lab.study.experiment import run_experiment
    from melanoma_lab.training.fit import compile_model

    cfg = tiny_cfg("trainer.strategy=mirrored", "tracking.enabled=false")
    model, _ = compile_model(training_recipe(cfg), 9, steps=2)
    assert isinstance(model.distribute_strategy, tf.distribute.MirroredStrategy)
    assert 0.0 <= run_experiment(cfg, tmp_path / "run")["val_balanced_accuracy"] <= 1.0


def test_multi_worker_strategy_needs_tf_config(tiny_cfg, monkeypatch):
    from melanoma_lab.config.schema import ConfigError
    from melanoma_lab.training.fit import compile_model

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="trainer.strategy=multi_worker needs TF_CONFIG"):
        compile_model(training_recipe(tiny_cfg("trainer.strategy=multi_worker")), 9, steps=2)


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="Keras 3 cannot fit under MultiWorkerMirroredStrategy (PerReplica error, "
                                       "keras-team/keras#20585); passes once upstream fixes it")
def test_multi_worker_strategy_trains_with_two_local_workers(tmp_path):
    import json
    import socket
    import subprocess
    import sys

    from tests.conftest import TINY

    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers = [subprocess.Popen([sys.executable, "-m", "melanoma_lab", "experiment=m1", *TINY, "tracking.enabled=false",
                                 "trainer.strategy=multi_worker", f"paths.root_dir={tmp_path}",
                                 f"hydra.run.dir={tmp_path}/worker{index}"],
                                env=os.environ | {"TF_CONFIG": json.dumps({"cluster": cluster,
                                                                           "task": {"type": "worker", "index": index}})},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for index in range(2)]
    outputs = [worker.communicate(timeout=120)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs[0][-2000:]


@pytest.mark.parametrize("experiment", ["m1", "m2", "m3", "m4"])
def test_study_experiments_stop_early_and_keep_the_best_weights(experiment):
    stopping = compose_config([f"experiment={experiment}"]).callbacks.early_stopping
    assert stopping.restore_best_weights and stopping.patience >= 1


def test_callbacks_come_from_the_callbacks_group_in_order(tmp_path):
    from melanoma_lab.tracking.run import RunTracker
    from melanoma_lab.training.fit import build_callbacks

    cfg = compose_config(["experiment=m4", "callbacks.checkpoint=null",
                          "+callbacks.nan._target_=keras.callbacks.TerminateOnNaN"])
    callbacks = build_callbacks(cfg.callbacks, cfg.trainer.monitor, tmp_path, RunTracker(False, "", "", "", None), None,
                                tmp_path / "backup")
    assert [type(c).__name__ for c in callbacks[3:]] == ["BackupAndRestore", "EarlyStopping", "TerminateOnNaN"]
    assert callbacks[4].patience == 15 and callbacks[4].monitor == "val_balanced_accuracy" and callbacks[4].mode == "max"
    with pytest.raises(ConfigError, match="callbacks.nan.when: unknown key; keras.callbacks.TerminateOnNaN takes"):
        cfg = compose_config(["+callbacks.nan._target_=keras.callbacks.TerminateOnNaN", "+callbacks.nan.when=always"])
        build_callbacks(cfg.callbacks, cfg.trainer.monitor, tmp_path, None, None, tmp_path)


def test_early_stopping_ends_the_run_and_restores_the_best_epoch(tiny_cfg, tmp_path):
    from melanoma_lab.study.preparation import load_audited_data, prepare_data
    from melanoma_lab.tracking.run import RunTracker
    from melanoma_lab.training.fit import train_model

    cfg = tiny_cfg("trainer.epochs=15", "callbacks.early_stopping.patience=1",
                   "optimizer.learning_rate=0.05", "trainer.precision=float32", "trainer.deterministic=true",
                   "tracking.enabled=false")
    audited = load_audited_data(cfg.dataset, cfg.audit, tmp_path)
    data = prepare_data(data_recipe(cfg), audited.catalog, audited.files)
    tracker = RunTracker(False, "", "", "", None)
    model, history = train_model(training_recipe(cfg), data, tracker, tmp_path, tmp_path / "backup")
    assert len(history["loss"]) < 15  # stopped after one epoch without improvement
    check = ValidationMetrics(data.validation.images.astype(np.float32), data.validation.labels, len(data.classes),
                              build_loss(cfg.loss), cfg.dataset.batch_size, cfg.evaluation.tta)
    check.set_model(model)
    logs: dict = {}
    check.on_epoch_end(0, logs)
    assert logs["val_loss"] == pytest.approx(min(history["val_loss"]), rel=1e-4)
    assert logs["val_loss"] < history["val_loss"][-1]  # not the last epoch's weights
