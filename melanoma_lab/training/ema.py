"""Keras' ``SwapEMAWeights`` (validate, select and keep the exponential moving average of the weights), made safe
on the JAX backend."""

from __future__ import annotations

import keras


class SwapEMAWeights(keras.callbacks.SwapEMAWeights):
    """On JAX, Keras 3.15's last-epoch finalisation assigns each model variable to its moving average, so both hold
    ONE buffer, which the next jitted call donates: every ``predict`` after ``fit`` then fails with "Array has been
    deleted". Here each average gets its own copy (the same values on every backend)."""

    def _backend_finalize_ema_values(self, optimizer) -> None:
        for variable, average in zip(optimizer._trainable_variables, optimizer._model_variables_moving_average):
            average.assign(keras.ops.copy(variable))
