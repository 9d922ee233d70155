"""Grad-CAM: where in the image the evidence for a class lies, from the model's last convolution.

The last convolution may sit inside a nested model (a ``keras.applications`` backbone is one layer of the
transfer model): the model is then evaluated in three parts, up to the backbone, the backbone (also giving
the convolution's activations) and after it, so the gradient reaches that convolution. A fold ensemble
(:mod:`melanoma_lab.study.ensemble`: models averaged by a final ``Average`` layer) gets the mean of its members' maps.
"""

from __future__ import annotations

from typing import Any, Callable

import keras
import numpy as np

from melanoma_lab.runtime import gradient

Probe = Callable[[Any, Any], tuple[Any, Any]]  # (images, shift) -> (last convolution's activations + shift, output)


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


def _shifted(graph: keras.Model, conv: keras.layers.Layer) -> Callable[[Any, Any], list]:
    """``graph`` as a function of (inputs, shift) whose ``conv`` outputs its activations plus ``shift``: the gradient
    with respect to the shift (at zero) is the gradient with respect to the activations, on every backend (JAX
    differentiates functions of their arguments, not intermediate tensors)."""
    def run(inputs: Any, shift: Any) -> list:
        def shifted(operation: keras.Operation) -> Callable:
            return (lambda *args, **kwargs: keras.ops.add(operation(*args, **kwargs), shift)) if operation is conv \
                else operation
        return graph._run_through_graph(inputs, operation_fn=shifted)  # Functional.call's own walk of its graph

    return run


def _probe(model: keras.Model) -> tuple[Probe, tuple[int, ...]]:
    """A function: (image batch, shift) -> (last convolution's activations + shift, the model's output); and the
    shape of those activations for one image."""
    conv, nested = _last_convolution(model)
    shape = (1, *conv.output.shape[1:])
    if nested is None:
        return _shifted(keras.Model(model.inputs, [conv.output, model.output]), conv), shape
    # Functional.input/output name the nested model's own Input; Operation's give the tensors it was called on
    before = keras.Model(model.inputs, keras.Operation.input.fget(nested))
    inside = _shifted(keras.Model(nested.inputs, [conv.output, nested.output]), conv)
    after = keras.Model(keras.Operation.output.fget(nested), model.output)

    def probe(images: Any, shift: Any) -> tuple[Any, Any]:
        features, embedding = inside(before(images, training=False), shift)
        return features, after(embedding, training=False)

    return probe, shape


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
    probe, shape = _probe(model)
    images = keras.ops.convert_to_tensor(image[None], "float32")

    def score(shift: Any) -> tuple[Any, Any]:
        features, probabilities = probe(images, shift)
        return keras.ops.cast(probabilities[0, class_index], "float32"), features

    gradients, features = gradient(score, np.zeros(shape, np.float32))
    features = keras.ops.convert_to_numpy(keras.ops.cast(features, "float32"))
    cam = np.maximum((features * gradients.mean(axis=(1, 2))[:, None, None, :]).sum(axis=-1), 0)[0]
    resized = keras.ops.image.resize(cam[..., None], image.shape[:2], interpolation="bilinear")
    return _normalised(keras.ops.convert_to_numpy(resized)[..., 0])
