"""Grad-CAM: where in the image the evidence for a class lies, from the model's last convolution.

The last convolution may sit inside a nested model (a ``keras.applications`` backbone is one layer of the
transfer model): the model is then evaluated in three parts, up to the backbone, the backbone (also giving
the convolution's activations) and after it, so the gradient reaches that convolution. A fold ensemble
(:mod:`melanoma_lab.ensemble`: models averaged by a final ``Average`` layer) gets the mean of its members' maps.
"""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np
import tensorflow as tf

Probe = Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


def _last_convolution(model: keras.Model) -> tuple[keras.layers.Layer, keras.Model | None]:
    """The last Conv2D layer of ``model`` or of a model nested in it (then also that nested model)."""
    for layer in reversed(model.layers):
        if isinstance(layer, keras.layers.Conv2D):
            return layer, None
        if isinstance(layer, keras.Model):
            try:
                conv, _ = _last_convolution(layer)
            except ValueError:
                continue
            return conv, layer
    raise ValueError(f"model {model.name} has no Conv2D layer for Grad-CAM")


def _probe(model: keras.Model) -> Probe:
    """A function: image batch -> (last convolution's activations, the model's output)."""
    conv, nested = _last_convolution(model)
    if nested is None:
        both = keras.Model(model.inputs, [conv.output, model.output])
        return lambda images: both(images, training=False)
    # Functional.input/output name the nested model's own Input; Operation's give the tensors it was called on
    before = keras.Model(model.inputs, keras.Operation.input.fget(nested))
    inside = keras.Model(nested.inputs, [conv.output, nested.output])
    after = keras.Model(keras.Operation.output.fget(nested), model.output)

    def probe(images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        features, embedding = inside(before(images, training=False), training=False)
        return features, after(embedding, training=False)

    return probe


def _averaged_members(model: keras.Model) -> list[keras.Model]:
    """The models whose outputs ``model``'s final ``Average`` layer averages (none for any other model)."""
    if not isinstance(model.layers[-1], keras.layers.Average):
        return []
    return [layer for layer in model.layers if isinstance(layer, keras.Model)]


def _normalised(cam: np.ndarray) -> np.ndarray:
    return cam / cam.max() if cam.max() > 0 else cam


def grad_cam(model: keras.Model, image: np.ndarray, class_index: int) -> np.ndarray:
    """Grad-CAM heatmap in [0, 1] (image size) of ``class_index`` over the last convolution layer (for an
    ensemble: the mean of its members' heatmaps)."""
    members = _averaged_members(model)
    if members:
        return _normalised(np.mean([grad_cam(member, image, class_index) for member in members], axis=0))
    probe = _probe(model)
    with tf.GradientTape() as tape:
        features, probabilities = probe(tf.constant(image[None], tf.float32))
        score = probabilities[:, class_index]
    gradients = tape.gradient(score, features)
    weights = tf.reduce_mean(tf.cast(gradients, tf.float32), axis=(1, 2))
    cam = tf.nn.relu(tf.reduce_sum(tf.cast(features, tf.float32) * weights[:, None, None, :], axis=-1))[0]
    return _normalised(tf.image.resize(cam[..., None], image.shape[:2])[..., 0].numpy())
