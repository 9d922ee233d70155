"""Recipe ingredients as config values (issue 15): Shades of Gray colour constancy, warm-up + cosine schedule,
EMA of the weights, and dihedral test-time views."""

import keras
import numpy as np
import pytest

from melanoma_lab.config.schema import ConfigError, validate
from melanoma_lab.data.colour import shades_of_gray
from melanoma_lab.evaluation.inference import ModelSettings, predict_probabilities, tta_mode, tta_views
from melanoma_lab.components.schedules import cosine
from melanoma_lab.training.fit import learning_rate
from tests.conftest import compose_config, data_recipe, training_recipe


def _p_mean(images: np.ndarray, power: float) -> np.ndarray:
    return np.mean((images.astype(np.float64) / 255) ** power, axis=(-3, -2)) ** (1 / power)


def test_shades_of_gray_removes_a_colour_cast_and_keeps_grey_images():
    rng = np.random.default_rng(0)
    grey = rng.integers(40, 200, (2, 16, 16, 1)).repeat(3, axis=-1).astype(np.uint8)
    cast = np.rint(grey * np.array([1.0, 0.8, 0.55])).astype(np.uint8)  # a warm illuminant
    corrected = shades_of_gray(cast, 6)
    assert corrected.dtype == np.uint8 and corrected.shape == cast.shape
    illuminant = _p_mean(corrected, 6)
    assert np.ptp(illuminant, axis=1).max() < 0.01 < np.ptp(_p_mean(cast, 6), axis=1).min()  # neutral after, not before
    assert np.abs(shades_of_gray(grey, 6).astype(int) - grey).max() <= 1  # a grey image is left as it is
    assert np.array_equal(shades_of_gray(cast[0], 6), corrected[0])  # one image = the same image in a batch
    black = np.zeros((8, 8, 3), np.uint8)
    assert np.array_equal(shades_of_gray(black), black)
    with pytest.raises(ValueError, match="at least 1"):
        shades_of_gray(cast, 0.5)


def test_shades_of_gray_with_a_grey_level_also_removes_an_exposure_change():
    rng = np.random.default_rng(1)
    scene = rng.integers(30, 200, (2, 16, 16, 3)).astype(np.uint8)
    darker = np.rint(scene * 0.8).astype(np.uint8)  # the shift check's "darker": every channel x0.8
    warm_dark = np.rint(scene * np.array([0.95, 0.8, 0.6])).astype(np.uint8)  # a cast and an exposure change
    # the published method (grey None) removes the cast but keeps each image's intensity: x0.8 stays x0.8
    kept = shades_of_gray(darker, 6).astype(int) - shades_of_gray(scene, 6).astype(int)
    assert kept.mean() < -15
    fixed = [shades_of_gray(x, 6, grey=0.6) for x in (scene, darker, warm_dark)]
    assert np.abs(fixed[1].astype(int) - fixed[0]).max() <= 2 and np.abs(fixed[2].astype(int) - fixed[0]).max() <= 3
    assert np.allclose(_p_mean(fixed[0], 6), 0.6, atol=0.005)  # every channel's illuminant at the grey level
    assert np.allclose(shades_of_gray(darker, np.inf, grey=0.6).max(axis=(1, 2)) / 255, 0.6, atol=0.003)  # max-RGB
    black = np.zeros((8, 8, 3), np.uint8)
    assert np.array_equal(shades_of_gray(black, 6, grey=0.6), black)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        shades_of_gray(scene, 6, grey=1.5)


def test_colour_constancy_is_a_validated_config_value():
    validate(compose_config(["dataset=synthetic", "dataset.colour_constancy_power=6"]))
    validate(compose_config(["dataset=synthetic", "dataset.colour_constancy_power=6", "dataset.colour_constancy_grey=0.7"]))
    with pytest.raises(ConfigError, match="dataset.colour_constancy_power"):
        validate(compose_config(["dataset=synthetic", "dataset.colour_constancy_power=0.5"]))
    with pytest.raises(ConfigError, match=r"dataset.colour_constancy_grey=1.5 must be null .* \(0, 1\]"):
        validate(compose_config(["dataset=synthetic", "dataset.colour_constancy_power=6",
                                 "dataset.colour_constancy_grey=1.5"]))
    with pytest.raises(ConfigError, match="set dataset.colour_constancy_power=6 too"):  # a grey level of nothing
        validate(compose_config(["dataset=synthetic", "dataset.colour_constancy_grey=0.7"]))


def test_prepared_images_are_colour_corrected_like_every_prediction(tiny_cfg):
    from melanoma_lab.data.sources import load_catalog
    from melanoma_lab.study.preparation import prepare_data

    plain_cfg, corrected_cfg = tiny_cfg("imbalance=none"), tiny_cfg("imbalance=none", "dataset.colour_constancy_power=4",
                                                                    "dataset.colour_constancy_grey=0.5")
    catalog = load_catalog(plain_cfg.dataset)
    plain, corrected = (prepare_data(data_recipe(cfg), catalog, catalog.files) for cfg in (plain_cfg, corrected_cfg))
    for before, after in ((plain.train, corrected.train), (plain.validation, corrected.validation),
                          (plain.test, corrected.test)):
        assert np.array_equal(after.images, shades_of_gray(before.images, 4, grey=0.5))
    settings = ModelSettings(catalog.classes, 32, "melanoma", None, colour_constancy_power=4, colour_constancy_grey=0.5)
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(9, "softmax")])
    raw = list(plain.test.images[:3])  # predict and serving pass raw decoded images: the settings correct them
    assert np.allclose(settings.probabilities(model, raw), predict_probabilities(model, corrected.test.images[:3], 8,
                                                                                 "none"), atol=1e-6)


def test_colour_constancy_refuses_a_training_split_read_from_disk(tiny_cfg):
    from melanoma_lab.data.sources import load_catalog
    from melanoma_lab.study.preparation import prepare_data

    cfg = tiny_cfg("imbalance=none", "dataset.colour_constancy_power=6", "dataset.ram_budget_mb=0.01")
    catalog = load_catalog(cfg.dataset)
    with pytest.raises(ConfigError, match="dataset.ram_budget_mb"):
        prepare_data(data_recipe(cfg), catalog, catalog.files)


def test_cosine_with_warm_up_rises_linearly_then_decays_to_zero():
    schedule = cosine(0.01, total_steps=50, steps_per_epoch=10, warmup_epochs=1)
    rates = [float(schedule(step)) for step in range(51)]
    assert rates[0] == pytest.approx(0.0) and rates[5] == pytest.approx(0.005) and rates[10] == pytest.approx(0.01)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:])) and rates[50] == pytest.approx(0.0, abs=1e-7)
    warm = compose_config(["lr_schedule=cosine", "trainer.epochs=5", "lr_schedule.warmup_epochs=1",
                           "optimizer.learning_rate=0.01"])
    assert [float(learning_rate(training_recipe(warm), 10)(s)) for s in (0, 5, 10, 30)] == pytest.approx(
        [rates[s] for s in (0, 5, 10, 30)])
    no_warmup = compose_config(["lr_schedule=cosine", "trainer.epochs=5", "optimizer.learning_rate=0.01"])
    # the m4 schedule, unchanged
    assert float(learning_rate(training_recipe(no_warmup), 10)(0)) == pytest.approx(0.01)


def test_ema_weights_are_validated_selected_and_kept(tiny_cfg, tmp_path):
    from melanoma_lab.data.sources import load_catalog
    from melanoma_lab.study.preparation import prepare_data
    from melanoma_lab.tracking.run import RunTracker
    from melanoma_lab.training.fit import compile_model, train_model

    cfg = tiny_cfg("optimizer.use_ema=true", "optimizer.ema_momentum=0.5", "trainer.epochs=2", "imbalance=none",
                   "trainer.precision=float32", "tracking.enabled=false")
    model, _ = compile_model(training_recipe(cfg), 9, steps=2)
    assert model.optimizer.use_ema and model.optimizer.ema_momentum == 0.5
    catalog = load_catalog(cfg.dataset)
    data = prepare_data(data_recipe(cfg), catalog, catalog.files)
    tracker = RunTracker(False, "", "", "run", None)
    model, history = train_model(training_recipe(cfg), data, tracker, tmp_path, tmp_path / "backup")
    # the last epoch's validation loss was measured on the weights the model keeps (the moving average)
    probabilities = model.predict(data.validation.images.astype(np.float32), verbose=0)
    one_hot = np.eye(9, dtype=np.float32)[data.validation.labels]
    assert float(keras.losses.CategoricalCrossentropy()(one_hot, probabilities)) == pytest.approx(
        history["val_loss"][-1], rel=1e-5)


def test_tta_views_none_flip_and_the_eight_dihedral_views():
    images = np.arange(2 * 3 * 3 * 1).reshape(2, 3, 3, 1)
    assert len(tta_views(images, "none")) == 1 and len(tta_views(images, "flip")) == 3
    dihedral = tta_views(images, "dihedral")
    assert len({v[0].tobytes() for v in dihedral}) == 8  # all eight rotations and reflections, none twice
    assert any(np.array_equal(v, images[:, :, ::-1]) for v in dihedral)  # the flips are among them
    assert any(np.array_equal(v, images[:, ::-1]) for v in dihedral)
    assert (tta_mode(True), tta_mode("false"), tta_mode(None), tta_mode("Dihedral")) == ("flip", "none", "none",
                                                                                         "dihedral")
    with pytest.raises(ConfigError, match="evaluation.tta"):
        tta_mode("rotate")
    with pytest.raises(ConfigError, match="evaluation.tta"):
        validate(compose_config(["evaluation.tta=rotate"]))
    model = keras.Sequential([keras.Input((3, 3, 1)), keras.layers.Flatten(), keras.layers.Dense(2, "softmax")])
    expected = np.mean([model.predict(v.astype(np.float32), verbose=0) for v in dihedral], axis=0)
    assert np.allclose(predict_probabilities(model, images, 4, "dihedral"), expected, atol=1e-6)
    # a model logged before the views (boolean tta) predicts as it did
    legacy = ModelSettings.from_metadata({"classes": ["a", "b"], "image_size": 3, "melanoma_class": "a", "tta": True})
    assert legacy.tta == "flip" and legacy.colour_constancy_power is None


@pytest.mark.slow
def test_m5_composes_m4_with_the_new_ingredients_and_trains_end_to_end(tiny_cfg, tmp_path):
    import mlflow

    from melanoma_lab.study.experiment import run_experiment
    from melanoma_lab.tracking.store import tracking_uri

    m4, m5 = (compose_config([f"experiment={name}"]) for name in ("m4", "m5"))
    assert (m5.lr_schedule.warmup_epochs, m5.lr_schedule._target_, m5.trainer.epochs) == (
        3, "melanoma_lab.components.schedules.cosine", m4.trainer.epochs)
    assert m5.optimizer.use_ema and m5.dataset.colour_constancy_power is None and m5.evaluation.tta == "dihedral"
    assert m5.model.residual and not m4.model.residual and m5.model.filters == m4.model.filters  # m4 otherwise
    cfg = tiny_cfg("experiment=m5", "trainer.epochs=3", "dataset.image_size=32", "model.filters=[8,16]",
                   "lr_schedule.warmup_epochs=1", "dataset.colour_constancy_power=6",  # ablated out, still served
                   "dataset.colour_constancy_grey=0.7")
    results = run_experiment(cfg, tmp_path / "out")
    assert 0 <= results["val_balanced_accuracy"] <= 1
    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    (run,) = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])
    rates = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "learning_rate"), key=lambda m: m.step)]
    assert rates[0] == pytest.approx(cfg.optimizer.learning_rate) and rates[2] < rates[1] < rates[0]  # warmed up
    metadata = mlflow.models.get_model_info(f"runs:/{run.info.run_id}/model").metadata
    assert (metadata["tta"], metadata["colour_constancy_power"], metadata["colour_constancy_grey"]) == ("dihedral", 6, 0.7)
    assert ModelSettings.from_metadata(metadata).colour_constancy_grey == 0.7  # predict and serving correct alike
    assert run.data.params["optimizer.use_ema"] == "True"
