"""Extending melanoma_lab: a model builder (one function + one YAML in a searchpath) and an imbalance strategy (one
function, chosen by overrides alone) from tests/plugins_example.py, and the checks derived from their signatures."""

import keras
import mlflow
import pytest

from melanoma_lab.config.schema import ConfigError, validate
from melanoma_lab.study.experiment import run_experiment
from melanoma_lab.config.plugins import Range
from melanoma_lab.tracking.store import tracking_uri
from tests.conftest import TINY_DATA, compose_config


@pytest.fixture
def user_conf(tmp_path):
    """A user's config folder holding one YAML: conf/model/tiny.yaml naming their builder."""
    (tmp_path / "user_conf" / "model").mkdir(parents=True)
    (tmp_path / "user_conf" / "model" / "tiny.yaml").write_text(
        "_target_: tests.plugins_example.build_tiny\nwidth: 3\n")
    return f"hydra.searchpath=[file://{tmp_path / 'user_conf'}]"


@pytest.mark.slow
def test_plugins_from_outside_the_package_run_through_overrides(tmp_path, shared_cache, user_conf):
    cfg = compose_config([*TINY_DATA, "trainer=smoke", "experiment=m1", "tracking.log_model=false", user_conf,
                          "model=tiny", "imbalance._target_=tests.plugins_example.undersample",
                          "+imbalance.per_class=2", f"paths.cache_dir={shared_cache}"], root=tmp_path)
    validate(cfg)
    run_experiment(cfg, tmp_path / "out")
    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    run = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])[0]
    assert run.info.status == "FINISHED"
    assert run.data.metrics["train_images"] == 2 * 9  # undersample(per_class=2): two images of each of 9 classes
    assert run.data.params["model._target_"] == "tests.plugins_example.build_tiny"
    best = keras.models.load_model(tmp_path / "out" / "checkpoints" / "best.keras")
    assert best.name == "tiny" and {"tiny_conv", "tiny_pool"} <= {layer.name for layer in best.layers}


def test_outside_plugin_parameters_are_checked_from_their_signature(tiny_cfg, user_conf):
    tiny_cfg = lambda *extra: compose_config([*TINY_DATA, *extra])  # noqa: E731 (TINY_RUN sizes the CNN)
    with pytest.raises(ConfigError, match=r"imbalance.per_class=0 must be >= 1"):
        validate(tiny_cfg("imbalance._target_=tests.plugins_example.undersample", "+imbalance.per_class=0"))
    with pytest.raises(ConfigError, match=r"model.depth: unknown key; tests.plugins_example.build_tiny takes "
                                          r"input_shape, num_classes, width"):
        validate(tiny_cfg(user_conf, "model=tiny", "+model.depth=2"))


def test_range_describes_its_bounds():
    assert Range(0, 1, max_open=True).holds(0) and not Range(0, 1, max_open=True).holds(1)
    assert str(Range(0.0, 1.0, max_open=True)) == "in [0.0, 1.0)" and str(Range(1)) == ">= 1"
    assert str(Range(max=5, max_open=True)) == "< 5" and not Range(min=0, min_open=True).holds(0)


def test_augmentation_presets_are_keras_layer_lists_seeded_in_order():
    from melanoma_lab.components.augmentation import build_augmentation

    stack = build_augmentation(compose_config(["experiment=m4"]).augmentation, seed=10)
    layers = {type(layer).__name__: layer for layer in stack.layers}
    assert list(layers) == ["RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast",
                            "RandomBrightness"]
    assert [layer.seed for layer in stack.layers] == list(range(10, 16))  # as before: one seed offset per step
    assert layers["RandomFlip"].mode == "horizontal_and_vertical" and layers["RandomRotation"].fill_mode == "reflect"
    assert tuple(layers["RandomContrast"].value_range) == (0, 255) and layers["RandomZoom"].height_factor == 0.2
    m2 = build_augmentation(compose_config(["experiment=m2"]).augmentation, seed=1)
    assert [type(layer).__name__ for layer in m2.layers] == ["RandomFlip", "RandomRotation", "RandomZoom"]
    assert build_augmentation(compose_config(["experiment=m2", "augmentation.zoom=null"]).augmentation, 1) \
        .layers[-1].__class__.__name__ == "RandomRotation"


def test_a_keras_layer_argument_is_checked_when_the_stack_is_built():
    from melanoma_lab.components.augmentation import build_augmentation

    cfg = compose_config(["experiment=m2", "+augmentation.flip.modee=vertical"])
    validate(cfg)  # Keras' own arguments are known only once Keras is imported
    with pytest.raises(ConfigError, match=r"augmentation.flip \(keras.layers.RandomFlip\): .*modee"):
        build_augmentation(cfg.augmentation, seed=1)


def test_model_and_optimizer_are_built_through_the_one_build_path(tiny_cfg):
    """An optimizer argument Keras does not take is a ConfigError naming the optimizer and the key (it was Keras' own
    traceback from a raw instantiate); the learning rate the run computes replaces the node's number."""
    from melanoma_lab.training.fit import compile_model
    from tests.conftest import training_recipe

    with pytest.raises(ConfigError, match=r"optimizer \(keras.optimizers.Adam\).*betaa_1"):
        compile_model(training_recipe(tiny_cfg("+optimizer.betaa_1=0.8")), 9, steps=2)
    model, _ = compile_model(training_recipe(tiny_cfg("optimizer.learning_rate=0.005", "lr_schedule=constant")), 9,
                             steps=2)
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(0.005)


def test_build_replaces_arguments_and_can_leave_the_call_unmade():
    import functools

    from melanoma_lab.config.plugins import build

    node = {"_target_": "builtins.dict", "a": 1}
    assert build(node, "x", replace={"a": 2}) == {"a": 2}
    made_later = build(node, "x", partial=True)
    assert isinstance(made_later, functools.partial) and made_later(b=3) == {"a": 1, "b": 3}
