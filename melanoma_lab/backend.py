"""What differs between the Keras 3 backends (``KERAS_BACKEND``: tensorflow, jax, torch), behind one function each,
chosen by ``keras.backend.backend()``: the gradient of a function and the GPUs it can use. Each backend's package is
imported only when that backend runs, so jax and torch need no TensorFlow.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

# The package(s) of each backend: tracked in every run's tags and pinned in a served model's environment.
PACKAGES = {"tensorflow": ("tensorflow-cpu", "tensorflow"), "jax": ("jax", "jaxlib"), "torch": ("torch",)}
Scored = Callable[[Any], tuple[Any, Any]]  # x -> (scalar score, anything else to keep)


def _tensorflow_gradient(function: Scored, x: np.ndarray) -> tuple[Any, Any]:
    import tensorflow as tf

    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        score, kept = function(x)
    return tape.gradient(score, x), kept


def _jax_gradient(function: Scored, x: np.ndarray) -> tuple[Any, Any]:
    import jax

    return jax.grad(function, has_aux=True)(jax.numpy.asarray(x))


def _torch_gradient(function: Scored, x: np.ndarray) -> tuple[Any, Any]:
    import keras
    import torch

    x = keras.ops.convert_to_tensor(x).detach().requires_grad_()  # on the device Keras computes on
    score, kept = function(x)
    (gradient,) = torch.autograd.grad(score, x)
    return gradient, kept


GRADIENTS = {"tensorflow": _tensorflow_gradient, "jax": _jax_gradient, "torch": _torch_gradient}


def gradient(function: Scored, x: np.ndarray) -> tuple[np.ndarray, Any]:
    """d score / d x at ``x`` (as float32 numpy) and what ``function`` kept, for ``function(x) -> (score, kept)``
    written in ``keras.ops`` (or Keras layers), on the running backend."""
    import keras

    backend = keras.backend.backend()
    if backend not in GRADIENTS:
        raise NotImplementedError(f"no gradient for the Keras backend {backend!r}: use one of {', '.join(GRADIENTS)}")
    result, kept = GRADIENTS[backend](function, x)
    return np.asarray(keras.ops.convert_to_numpy(result), np.float32), kept


def _tensorflow_gpus() -> list[str]:
    import tensorflow as tf

    return [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
            for gpu in tf.config.list_physical_devices("GPU")]


def _jax_gpus() -> list[str]:
    import jax

    return [device.device_kind for device in jax.devices() if device.platform == "gpu"]


def _torch_gpus() -> list[str]:
    import torch

    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


GPUS = {"tensorflow": _tensorflow_gpus, "jax": _jax_gpus, "torch": _torch_gpus}


def gpus() -> list[str]:
    """Names of the GPUs the running backend sees (empty on a CPU, or on a backend not in :data:`GPUS`)."""
    import keras

    return GPUS.get(keras.backend.backend(), list)()
