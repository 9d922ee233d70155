"""Learning-rate schedules (Keras' own schedules, set up from a run's length)."""

from __future__ import annotations

import keras


def cosine(learning_rate: float, epochs: int, steps_per_epoch: int,
           warmup_epochs: int = 0) -> keras.optimizers.schedules.LearningRateSchedule:
    """Cosine decay to zero over the whole run; with ``warmup_epochs`` a linear warm-up from 0 to
    ``learning_rate`` over those first epochs, then the cosine over the remaining ones (Keras' ``CosineDecay``)."""
    warmup = min(warmup_epochs, max(epochs - 1, 0)) * steps_per_epoch
    decay = max(1, epochs * steps_per_epoch - warmup)
    if not warmup:
        return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=decay)
    return keras.optimizers.schedules.CosineDecay(0.0, decay_steps=decay, warmup_target=learning_rate,
                                                  warmup_steps=warmup)
