"""The Keras callback that logs each epoch to a run (the one part of tracking that needs Keras, kept apart so that
opening, reading and closing runs does not load TensorFlow)."""

from __future__ import annotations

import time

import keras
import numpy as np

from melanoma_lab.tracking.run import RunTracker


class EpochLogger(keras.callbacks.Callback):
    """Log Keras' epoch logs (loss, accuracy, val_*, learning rate) and the epoch's wall time
    (``epoch_seconds``, training plus validation) to the run, one batch per epoch."""

    def __init__(self, tracker: RunTracker):
        super().__init__()
        self.tracker = tracker
        self.started = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        metrics = {k: float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0}
        self.tracker.log_metrics(metrics | {"epoch_seconds": time.perf_counter() - self.started}, step=epoch)
