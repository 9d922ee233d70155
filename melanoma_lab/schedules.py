"""Learning-rate schedules, chosen by the ``lr_schedule`` group's ``_target_``. Each takes the optimizer's base
``learning_rate`` and the run's ``total_steps`` (epochs x batches per epoch) from the trainer, and returns what a
Keras optimizer takes as its learning rate."""

from __future__ import annotations

from typing import Any

from melanoma_lab.plugins import Annotated, Range


def constant(learning_rate: float, total_steps: int) -> float:
    """The optimizer's learning rate, unchanged."""
    return learning_rate


def cosine(learning_rate: float, total_steps: int, alpha: Annotated[float, Range(0.0, 1.0)] = 0.0) -> Any:
    """Cosine decay from the base rate to ``alpha`` times it over the whole run."""
    import keras

    return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, total_steps), alpha=alpha)
