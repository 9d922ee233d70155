import keras
import numpy as np
import pytest
from hydra.utils import instantiate

from melanoma_lab.config.schema import ConfigError, validate
from melanoma_lab.components.models import build_cnn, build_transfer
from tests.conftest import compose_config


def _conv_widths(model: keras.Model) -> list[int]:
    return [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


def test_cnn_is_built_from_config_values():
    cfg = compose_config(["experiment=m2", "model.filters=[4,8,12]", "model.dense_units=[10]",
                          "model.batch_norm=true"])
    model = instantiate(cfg.model, input_shape=(32, 32, 3), num_classes=9, _convert_="all")
    assert _conv_widths(model) == [4, 8, 12]
    assert any(isinstance(l, keras.layers.BatchNormalization) for l in model.layers)
    assert [l.rate for l in model.layers if isinstance(l, keras.layers.Dropout)] == [0.2, 0.2]
    assert isinstance(model.layers[1], keras.layers.Rescaling)
    probabilities = model.predict(np.full((2, 32, 32, 3), 255.0, np.float32), verbose=0)
    assert probabilities.shape == (2, 9) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)


def test_global_average_head_has_far_fewer_parameters():
    flat = build_cnn((64, 64, 3), 9, filters=[8, 16], head="flatten")
    pooled = build_cnn((64, 64, 3), 9, filters=[8, 16], head="global_avg")
    assert pooled.count_params() * 10 < flat.count_params()


def test_bad_architecture_values_are_named():
    with pytest.raises(ConfigError, match="model.pooling='median' must be one of max, avg"):
        validate(compose_config(["model.pooling=median"]))  # from build_cnn's signature, before Keras builds
    with pytest.raises(ValueError, match="model.backbone"):
        build_transfer((32, 32, 3), 9, backbone="NoSuchNet")


def _backbone(model: keras.Model) -> keras.Model:
    return [layer for layer in model.layers if isinstance(layer, keras.Model)][0]


def test_transfer_model_without_pretrained_weights_trains_its_backbone(caplog):
    cfg = compose_config(["model=transfer", "model.weights=null", "model.trainable_backbone=false"])
    model = instantiate(cfg.model, input_shape=(32, 32, 3), num_classes=9, _convert_="all")
    assert _backbone(model).trainable is True  # frozen random features would learn nothing
    assert "trained from scratch" in caplog.text and caplog.records[-1].levelname == "WARNING"
    assert model.predict(np.zeros((1, 32, 32, 3), np.float32), verbose=0).shape == (1, 9)


def test_transfer_weights_from_a_local_file_offline(tmp_path):
    saved = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg")
    saved.save_weights(tmp_path / "backbone.weights.h5")
    cfg = compose_config(["model=transfer", f"model.weights={tmp_path / 'backbone.weights.h5'}"])
    backbone = _backbone(instantiate(cfg.model, input_shape=(32, 32, 3), num_classes=9, _convert_="all"))
    assert backbone.trainable is False  # pretrained: only the head trains
    assert all(np.array_equal(a, b) for a, b in zip(backbone.get_weights(), saved.get_weights(), strict=True))


def test_a_missing_or_foreign_weights_file_names_the_key(tmp_path):
    from melanoma_lab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"model.weights='.*missing.weights.h5': no such file.*imagenet.*null"):
        build_transfer((32, 32, 3), 9, weights=str(tmp_path / "missing.weights.h5"))
    build_cnn((32, 32, 3), 9, filters=[4]).save_weights(tmp_path / "cnn.weights.h5")
    with pytest.raises(ConfigError, match=r"model.weights='.*cnn.weights.h5' does not fit MobileNetV2"):
        build_transfer((32, 32, 3), 9, weights=str(tmp_path / "cnn.weights.h5"))


def test_residual_blocks_add_a_projected_shortcut_per_block():
    model = build_cnn((32, 32, 3), 9, filters=[8, 16], batch_norm=True, convs_per_block=2, residual=True,
                      head="global_avg", dense_units=[])
    assert sum(isinstance(l, keras.layers.Add) for l in model.layers) == 2
    assert _conv_widths(model) == [8, 8, 8, 16, 16, 16]
    with pytest.raises(ConfigError, match="model.convs_per_block=0 must be >= 1"):
        validate(compose_config(["model.convs_per_block=0"]))


def test_squeeze_excitation_gates_every_block_channelwise():
    plain = build_cnn((32, 32, 3), 9, filters=[8, 16], batch_norm=True, residual=True, head="global_avg",
                      dense_units=[])
    gated = build_cnn((32, 32, 3), 9, filters=[8, 16], batch_norm=True, residual=True, head="global_avg",
                      dense_units=[], squeeze_excitation=4)
    assert not [l for l in plain.layers if isinstance(l, keras.layers.Multiply)]
    assert [l.name for l in gated.layers if isinstance(l, keras.layers.Multiply)] == ["se0_excite", "se1_excite"]
    # per block: reduce (width -> width/4, with bias) and expand (width/4 -> width, with bias)
    extra = sum((w * (w // 4) + w // 4) + ((w // 4) * w + w) for w in (8, 16))
    assert gated.count_params() - plain.count_params() == extra
    assert gated.get_layer("se1_expand").activation.__name__ == "sigmoid"
    with pytest.raises(ConfigError, match="model.squeeze_excitation=-1 must be >= 0"):
        validate(compose_config(["model.squeeze_excitation=-1"]))
