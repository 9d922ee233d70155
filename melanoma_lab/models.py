"""Model builders, chosen by ``model._target_`` in config. Inputs are float images in [0, 255]."""

from __future__ import annotations

import importlib
from typing import Optional

import keras

POOLING = {"max": keras.layers.MaxPooling2D, "avg": keras.layers.AveragePooling2D}


def _classifier_head(x, dense_units: list[int], dropout: float, num_classes: int):
    for units in dense_units:
        x = keras.layers.Dense(units, activation="relu")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout)(x)
    # float32 output keeps softmax stable under mixed precision
    return keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(x)


def build_cnn(input_shape: tuple[int, int, int], num_classes: int, name: str = "cnn",
              filters: list[int] = (16, 32, 64), kernel_size: int = 3, pooling: str = "max",
              batch_norm: bool = False, head: str = "flatten", dense_units: list[int] = (128,),
              dropout: float = 0.0) -> keras.Model:
    """The seeds' CNN family: rescale to [0, 1], one conv(+BN)+pool block per entry of ``filters``,
    then flatten (or global average pooling), dropout, dense layers and a softmax."""
    if pooling not in POOLING:
        raise ValueError(f"model.pooling={pooling!r} must be one of {sorted(POOLING)}")
    if head not in ("flatten", "global_avg"):
        raise ValueError(f"model.head={head!r} must be 'flatten' or 'global_avg'")
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    for block, width in enumerate(filters):
        x = keras.layers.Conv2D(width, kernel_size, padding="same", use_bias=not batch_norm,
                                activation=None if batch_norm else "relu", name=f"conv{block}")(x)
        if batch_norm:
            x = keras.layers.BatchNormalization()(x)
            x = keras.layers.Activation("relu")(x)
        x = POOLING[pooling]()(x)
    x = keras.layers.Flatten()(x) if head == "flatten" else keras.layers.GlobalAveragePooling2D()(x)
    if dropout > 0:
        x = keras.layers.Dropout(dropout)(x)
    return keras.Model(inputs, _classifier_head(x, list(dense_units), dropout, num_classes), name=name)


def build_transfer(input_shape: tuple[int, int, int], num_classes: int, name: str = "transfer",
                   backbone: str = "MobileNetV2", weights: Optional[str] = None,
                   trainable_backbone: bool = False, dense_units: list[int] = (), dropout: float = 0.2) -> keras.Model:
    """A ``keras.applications`` backbone (its own preprocessing included) with a new softmax head."""
    application = getattr(keras.applications, backbone, None)
    if application is None:
        raise ValueError(f"model.backbone={backbone!r} is not in keras.applications (e.g. MobileNetV2, "
                         "EfficientNetB0, ResNet50)")
    module = importlib.import_module("keras.applications." + application.__module__.rsplit(".", 1)[1])
    preprocess = getattr(module, "preprocess_input", None)
    inputs = keras.Input(shape=input_shape, name="image")
    base = application(include_top=False, weights=weights, input_shape=input_shape, pooling="avg")
    base.trainable = trainable_backbone
    x = preprocess(inputs) if preprocess is not None else inputs
    x = base(x, training=trainable_backbone)
    if dropout > 0:
        x = keras.layers.Dropout(dropout)(x)
    return keras.Model(inputs, _classifier_head(x, list(dense_units), dropout, num_classes), name=name)
