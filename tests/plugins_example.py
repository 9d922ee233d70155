"""Plug-ins defined outside the package, used by tests/test_plugins.py through config overrides alone."""

from __future__ import annotations

import pandas as pd

from melanoma_lab.components.imbalance import Rebalanced
from melanoma_lab.config.plugins import Annotated, Range


def build_tiny(input_shape: tuple[int, int, int], num_classes: int, width: Annotated[int, Range(1)] = 4):
    """A model builder: global average of a single convolution, then a softmax."""
    import keras

    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    x = keras.layers.Conv2D(width, 3, activation="relu", name="tiny_conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="tiny_pool")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="tiny")


def undersample(train: pd.DataFrame, seed: int, per_class: Annotated[int, Range(1)] = 3) -> Rebalanced:
    """An imbalance strategy: at most ``per_class`` training images of each class."""
    shuffled = train.sample(frac=1.0, random_state=seed)
    return Rebalanced(shuffled.groupby("label").head(per_class).reset_index(drop=True))
