"""White-balance and exposure jitter: a Keras layer that multiplies each image's colour channels by gains of its own
(or all of them by one gain: exposure).

Keras' colour layers (``RandomColorJitter``, ``RandomHue``, ``RandomSaturation``) rotate hue or scale saturation; none
models a change of illuminant or camera white balance, which scales R, G and B independently (what the shift check's
colour casts do: :func:`melanoma_lab.evaluation.shifts.channel_gains`); ``RandomBrightness`` adds a constant, where a
change of exposure scales every value (the shift check's :func:`melanoma_lab.evaluation.shifts.brightness`). Built by
:func:`melanoma_lab.components.augmentation.channel_gain` from the ``augmentation`` group.
"""

from __future__ import annotations

import keras


class RandomChannelGain(keras.layers.Layer):
    """In training, each image's channels are multiplied by gains drawn uniformly from ``[1 - factor, 1 + factor]``
    (one per image and channel; one per image with ``per_channel=False``, an exposure change), then clipped to
    ``value_range``; outside training the images pass unchanged. Takes
    a batch (n, h, w, c) or one image (h, w, c), or Keras' preprocessing dict ``{"images": ..., "labels": ...}``
    (the labels pass through)."""

    def __init__(self, factor: float, value_range: tuple[float, float] = (0, 255), seed: int | None = None,
                 per_channel: bool = True, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= factor < 1:
            raise ValueError(f"factor must be in [0, 1): gains are drawn from [1 - factor, 1 + factor], got {factor}")
        low, high = value_range
        if not low < high:
            raise ValueError(f"value_range must be (low, high) with low < high, got {tuple(value_range)}")
        self.factor, self.value_range, self.seed, self.per_channel = float(factor), (low, high), seed, bool(per_channel)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=True):
        images = inputs["images"] if isinstance(inputs, dict) else inputs
        if training and self.factor > 0:
            shape = keras.ops.shape(images)
            channels = shape[-1] if self.per_channel else 1
            gain_shape = (shape[0], 1, 1, channels) if len(images.shape) == 4 else (1, 1, channels)
            gains = keras.random.uniform(gain_shape, 1 - self.factor, 1 + self.factor, dtype=images.dtype,
                                         seed=self.seed_generator)
            images = keras.ops.clip(images * gains, *self.value_range)
        return {**inputs, "images": images} if isinstance(inputs, dict) else images

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "factor": self.factor, "value_range": self.value_range, "seed": self.seed,
                "per_channel": self.per_channel}
