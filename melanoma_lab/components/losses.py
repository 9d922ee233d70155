"""Losses on one-hot labels, chosen by the ``loss`` group's ``_target_``. Keras is imported only when one is built."""

from __future__ import annotations

from typing import TYPE_CHECKING

from melanoma_lab.config.plugins import Annotated, Range

if TYPE_CHECKING:
    import keras

Smoothing = Annotated[float, Range(0.0, 1.0, max_open=True)]


def crossentropy(label_smoothing: Smoothing = 0.0) -> keras.losses.Loss:
    """Categorical cross-entropy; ``label_smoothing`` moves that share of each label's mass to the other classes."""
    import keras

    return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)


def focal(gamma: Annotated[float, Range(0.0)] = 2.0, label_smoothing: Smoothing = 0.0) -> keras.losses.Loss:
    """Categorical focal loss: cross-entropy down-weighted by ``(1 - p)**gamma`` on well-classified images."""
    import keras

    return keras.losses.CategoricalFocalCrossentropy(gamma=gamma, label_smoothing=label_smoothing)
