"""White-balance and exposure jitter (melanoma_lab/components/channel_gain.py): per-image (per-channel) gains in training
only."""

import numpy as np
import pytest

from melanoma_lab.config.schema import validate
from melanoma_lab.errors import ConfigError
from tests.conftest import compose_config

STEP = ["+augmentation.channel_gain._target_=melanoma_lab.components.augmentation.channel_gain"]


def _layer(factor=0.2, seed=3):
    from melanoma_lab.components.channel_gain import RandomChannelGain

    return RandomChannelGain(factor, seed=seed)


def test_training_scales_each_image_and_channel_by_its_own_gain_within_the_factor():
    images = np.full((64, 4, 4, 3), 100.0, np.float32)
    out = np.asarray(_layer()(images, training=True))
    gains = out[:, 0, 0, :] / 100.0
    assert np.allclose(out, out[:, :1, :1, :])  # one gain per image and channel: the image stays flat
    assert gains.min() >= 0.8 - 1e-6 and gains.max() <= 1.2 + 1e-6
    assert gains.std() > 0.05  # drawn, not constant
    assert np.abs(gains[:, 0] - gains[:, 1]).max() > 0.05  # channels differ: a colour cast, not brightness
    assert np.abs(gains[0] - gains[1]).max() > 1e-3  # images differ


def test_per_channel_false_scales_the_three_channels_of_an_image_by_one_gain_an_exposure_change():
    from melanoma_lab.components.augmentation import channel_gain

    images = np.full((64, 3, 3, 3), 100.0, np.float32)
    out = np.asarray(channel_gain(0.2, seed=3, per_channel=False)(images, training=True))
    gains = out[:, 0, 0, :] / 100.0
    assert np.allclose(gains, gains[:, :1], atol=1e-5)  # one gain for R, G and B: brightness, no cast
    assert gains.min() >= 0.8 - 1e-6 and gains.max() <= 1.2 + 1e-6 and gains[:, 0].std() > 0.05
    assert channel_gain(0.2, per_channel=False).get_config()["per_channel"] is False


def test_outside_training_images_pass_unchanged_and_values_stay_in_range():
    images = np.random.default_rng(0).uniform(0, 255, (8, 5, 5, 3)).astype(np.float32)
    assert np.array_equal(np.asarray(_layer()(images, training=False)), images)
    bright = np.full((16, 2, 2, 3), 250.0, np.float32)
    assert np.asarray(_layer(0.5)(bright, training=True)).max() <= 255.0
    assert np.array_equal(np.asarray(_layer(0.0)(images, training=True)), images)


def test_keras_preprocessing_dict_keeps_its_labels_and_one_image_works():
    labels = np.eye(3, dtype=np.float32)
    out = _layer()({"images": np.full((3, 2, 2, 3), 50.0, np.float32), "labels": labels}, training=True)
    assert np.array_equal(np.asarray(out["labels"]), labels) and np.asarray(out["images"]).shape == (3, 2, 2, 3)
    assert np.asarray(_layer()(np.full((2, 2, 3), 50.0, np.float32), training=True)).shape == (2, 2, 3)


def test_the_same_seed_draws_the_same_gains():
    images = np.full((4, 2, 2, 3), 100.0, np.float32)
    assert np.allclose(np.asarray(_layer(seed=7)(images)), np.asarray(_layer(seed=7)(images)))


def test_a_factor_outside_zero_to_one_is_refused_at_composition_and_by_the_layer():
    with pytest.raises(ConfigError, match="augmentation.channel_gain.*factor"):
        validate(compose_config(["experiment=m6", "dataset=synthetic", *STEP, "+augmentation.channel_gain.factor=1.5"]))
    with pytest.raises(ValueError, match="factor must be in"):
        _layer(1.0)


def test_it_is_a_step_of_the_augmentation_group_seeded_in_order():
    from melanoma_lab.components.augmentation import build_augmentation

    cfg = compose_config(["experiment=m6", "dataset=synthetic", *STEP, "+augmentation.channel_gain.factor=0.2"])
    validate(cfg)
    stack = build_augmentation(cfg.augmentation, seed=10)
    assert type(stack.layers[-1]).__name__ == "RandomChannelGain" and stack.layers[-1].seed == 10 + len(stack.layers) - 1
    assert stack.layers[-1].factor == pytest.approx(0.2)
