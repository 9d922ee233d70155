"""Fine-tuning a pretrained backbone in two phases (trainer.head_epochs): the new head alone on the frozen
backbone, then the configured layers under the run's own optimizer and schedule."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from tests.conftest import TINY_DATA, compose_config, training_recipe


def _lite_cfg(cache, *extra, root=None):
    return compose_config([*TINY_DATA, "trainer=smoke", "model=efficientnet_lite", "model.trainable_backbone=true",
                           "model.trainable_blocks=2", f"paths.cache_dir={cache}", *extra], root=root)


def _weights(model, names):
    (backbone,) = [layer for layer in model.layers if layer.name.startswith("efficientnet_lite")]
    return {name: [np.array(w) for w in backbone.get_layer(name).get_weights()] for name in names}


def _same(before, after):
    return all(np.array_equal(a, b) for a, b in zip(before, after))


@pytest.mark.slow
def test_the_head_epochs_leave_the_backbone_untouched_then_fine_tuning_trains_only_the_configured_blocks(
        shared_cache):
    import keras
    from hydra.utils import instantiate

    from melanoma_lab.training.fit import compile_model, fit_head

    cfg = _lite_cfg(shared_cache, "trainer.epochs=2", "trainer.head_epochs=1", "trainer.precision=float32")
    model, loss = compile_model(training_recipe(cfg), 9, steps=2)
    trainable_before = [w.path for w in model.trainable_weights]
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (32, 32, 32, 3)).astype(np.float32)
    y = np.eye(9, dtype=np.float32)[rng.integers(0, 9, 32)]
    backbone_layers = ["stem_conv", "block0_dwconv", "block15_dwconv", "head_conv"]
    start, head = _weights(model, backbone_layers), [np.array(w) for w in model.layers[-1].get_weights()]

    import tensorflow as tf

    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    history = fit_head(model, training_recipe(cfg), loss, batches, [], None)
    assert len(history["loss"]) == 1
    after_head = _weights(model, backbone_layers)
    assert all(_same(start[name], after_head[name]) for name in backbone_layers)  # frozen: not one weight moved
    assert not _same(head, model.layers[-1].get_weights())  # the new head learned
    assert [w.path for w in model.trainable_weights] == trainable_before  # the configured flags are back
    assert isinstance(model.optimizer, type(instantiate(cfg.optimizer, _partial_=True)(learning_rate=1.0)))
    assert model.optimizer.iterations.numpy() == 0  # the run's own optimizer and schedule, not the head's

    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    tuned = _weights(model, backbone_layers)
    assert _same(start["stem_conv"], tuned["stem_conv"]) and _same(start["block0_dwconv"], tuned["block0_dwconv"])
    assert not _same(start["block15_dwconv"], tuned["block15_dwconv"]) and not _same(start["head_conv"],
                                                                                     tuned["head_conv"])
    assert keras.backend.backend() == "tensorflow"


@pytest.mark.slow
def test_a_run_with_head_epochs_logs_them_at_their_own_rate_and_never_selects_them(shared_cache, tmp_path):
    from melanoma_lab.study.experiment import run_experiment
    from melanoma_lab.tracking.store import tracking_uri

    cfg = _lite_cfg(shared_cache, "trainer.epochs=3", "trainer.head_epochs=1", "trainer.head_learning_rate=0.002",
                    "optimizer=adamw", "optimizer.learning_rate=0.0001", "lr_schedule=cosine",
                    "tracking.log_model=false", root=tmp_path)
    results = run_experiment(cfg, tmp_path / "out")
    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    (run,) = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])
    rates = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "learning_rate"),
                                     key=lambda m: m.step)]
    assert len(rates) == 3 and rates[0] == pytest.approx(0.002)  # the head epoch, then the cosine from 1e-4
    assert rates[1] <= 1e-4 + 1e-9 and rates[2] < rates[1]
    assert run.data.params["trainer.head_epochs"] == "1" and run.data.params["optimizer.weight_decay"] == "0.004"
    assert np.isfinite(results["train_val_accuracy_gap"])


def test_head_epochs_without_a_pretrained_backbone_is_a_clear_error(tiny_cfg):
    from melanoma_lab.errors import ConfigError
    from melanoma_lab.training.fit import compile_model, fit_head

    cfg = tiny_cfg("trainer.epochs=2", "trainer.head_epochs=1")
    model, loss = compile_model(training_recipe(cfg), 9, steps=1)
    with pytest.raises(ConfigError, match=r"model=cnn has none: use model=efficientnet_lite or model=transfer"):
        fit_head(model, training_recipe(cfg), loss, (np.zeros((2, 32, 32, 3)), np.eye(9)[:2]), [], None)


@pytest.mark.parametrize("overrides, message", [
    (["trainer.epochs=2", "trainer.head_epochs=2"], "trainer.head_epochs=2 must be fewer than trainer.epochs=2"),
    (["trainer.head_epochs=-1"], "trainer.head_epochs=-1 must not be negative"),
    (["optimizer=adamw", "optimizer.weight_decay=-0.1"], "optimizer.weight_decay=-0.1 must be null"),
])
def test_fine_tuning_settings_out_of_range_are_named(tiny_cfg, overrides, message):
    from melanoma_lab.config.schema import validate
    from melanoma_lab.errors import ConfigError

    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        validate(tiny_cfg(*overrides))


def test_best_epoch_skips_the_head_epochs():
    from melanoma_lab.training.fit import best_epoch

    history = {"val_balanced_accuracy": [0.9, 0.5, 0.7, 0.6], "val_loss": [0.1, 0.9, 0.5, 0.6]}
    assert best_epoch(history, "val_balanced_accuracy") == 0 and best_epoch(history, "val_balanced_accuracy", first=1) == 2
    assert best_epoch(history, "val_loss", first=2) == 2


@pytest.mark.slow
def test_head_epochs_under_the_mirrored_strategy_recompile_in_the_models_own_strategy(shared_cache):
    import tensorflow as tf

    from melanoma_lab.training.fit import compile_model, fit_head

    cfg = _lite_cfg(shared_cache, "trainer.epochs=2", "trainer.head_epochs=1", "trainer.strategy=mirrored")
    model, loss = compile_model(training_recipe(cfg), 9, steps=1)
    strategy = model.distribute_strategy
    rng = np.random.default_rng(0)
    data = tf.data.Dataset.from_tensor_slices((rng.uniform(0, 255, (16, 32, 32, 3)).astype(np.float32),
                                               np.eye(9, dtype=np.float32)[rng.integers(0, 9, 16)])).batch(8)
    fit_head(model, training_recipe(cfg), loss, data, [], None)  # was: "Mixing different tf.distribute.Strategy
    # objects"
    assert model.distribute_strategy is strategy and model.fit(data, epochs=1, verbose=0).history["loss"]
