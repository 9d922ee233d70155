"""Learning-rate schedules, chosen by the ``lr_schedule`` group's ``_target_``. Each takes the optimizer's base
``learning_rate`` and the run's ``total_steps`` (epochs x batches per epoch; ``steps_per_epoch`` too if it asks)
from the trainer, and returns what a Keras optimizer takes as its learning rate."""

from __future__ import annotations

from typing import Any

from melanoma_lab.config.plugins import Annotated, Range


def constant(learning_rate: float, total_steps: int) -> float:
    """The optimizer's learning rate, unchanged."""
    return learning_rate


def cosine(learning_rate: float, total_steps: int, steps_per_epoch: int,
           alpha: Annotated[float, Range(0.0, 1.0)] = 0.0, warmup_epochs: Annotated[int, Range(0, None)] = 0) -> Any:
    """Cosine decay from the base rate to ``alpha`` times it over the whole run; with ``warmup_epochs`` a linear
    warm-up from 0 to the base rate over those first epochs (at most all but one), then the cosine over the rest
    (Keras' ``CosineDecay`` with its own warm-up)."""
    import keras

    warmup = min(warmup_epochs * steps_per_epoch, max(total_steps - steps_per_epoch, 0))
    decay = max(1, total_steps - warmup)
    if not warmup:
        return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=decay, alpha=alpha)
    return keras.optimizers.schedules.CosineDecay(0.0, decay_steps=decay, alpha=alpha, warmup_target=learning_rate,
                                                  warmup_steps=warmup)
