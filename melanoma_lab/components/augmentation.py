"""Online augmentation of training batches: the ``augmentation`` group is an ordered mapping of named steps, each a
Keras preprocessing layer (or any function returning a layer) by ``_target_`` with its arguments, applied in order
to batches of images in [0, 255]. A step set to null is skipped.

Keras layers are imported only when the stack is built. Their arguments are checked then, naming the step (a
ConfigError); the values in :data:`melanoma_lab.config.plugins.KERAS_ARGUMENTS`, which Keras takes without checking them (RandomFlip's mode) or
checks only once TensorFlow has loaded, are checked at composition with the rest of the config.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from omegaconf import DictConfig

from melanoma_lab.config.plugins import Annotated, Range, build

if TYPE_CHECKING:
    import keras


def channel_gain(factor: Annotated[float, Range(0.0, 1.0, max_open=True)],
                 value_range: tuple[float, float] = (0, 255), seed: int | None = None,
                 per_channel: bool = True) -> keras.layers.Layer:
    """White-balance jitter (:class:`melanoma_lab.components.channel_gain.RandomChannelGain`): each training image's
    R, G and B scaled by gains of its own from ``[1 - factor, 1 + factor]``; ``per_channel: false``, one gain for
    all three (exposure jitter)."""
    from melanoma_lab.components.channel_gain import RandomChannelGain

    return RandomChannelGain(factor, tuple(value_range), seed=seed, per_channel=per_channel)


def build_augmentation(cfg: DictConfig, seed: int) -> keras.Sequential | None:
    """The configured steps as one ``keras.Sequential`` (step ``i`` seeded ``seed + i`` when it takes a seed), or
    None without steps. The steps compute in float32 whatever ``trainer.precision`` made the global policy: they
    prepare inputs (the model casts them), and under a mixed policy a label-mixing step would meet float32 labels
    with bfloat16 images and fail."""
    import keras

    layers = []
    for name, step in (cfg or {}).items():
        if step is None:
            continue
        layers.append(build(step, f"augmentation.{name}", seed=seed + len(layers)))
    if not layers:
        return None
    stack = keras.Sequential(layers, name="augmentation")
    for layer in (stack, *layers):
        layer.dtype_policy = keras.DTypePolicy("float32")
    return stack
