"""Fit a compiled Keras model: seeding, callbacks (tracking, early stopping, checkpoints) and history."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from omegaconf import DictConfig

from melanoma_lab.tracking import EpochLogger, RunTracker


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and TensorFlow; optionally force TensorFlow's deterministic ops."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


class LearningRateLogger(keras.callbacks.Callback):
    """Add the optimizer's current learning rate to each epoch's logs."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


def build_callbacks(trainer: DictConfig, output_dir: Path, tracker: RunTracker) -> list[keras.callbacks.Callback]:
    callbacks: list[keras.callbacks.Callback] = [LearningRateLogger(), EpochLogger(tracker)]
    if trainer.early_stopping.enabled:
        stop = trainer.early_stopping
        callbacks.append(keras.callbacks.EarlyStopping(monitor=stop.monitor, patience=stop.patience,
                                                       restore_best_weights=stop.restore_best_weights))
    if trainer.checkpoint:
        (output_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        callbacks.append(keras.callbacks.ModelCheckpoint(output_dir / "checkpoints" / "best.keras",
                                                         monitor="val_loss", save_best_only=True))
    return callbacks


def fit(model: keras.Model, train: tf.data.Dataset, validation: tf.data.Dataset, trainer: DictConfig,
        callbacks: list[keras.callbacks.Callback], class_weight: dict[int, float] | None = None) -> dict[str, list]:
    """Train for ``trainer.epochs``; returns Keras' history (per-epoch lists)."""
    history = model.fit(train, validation_data=validation, epochs=trainer.epochs, callbacks=callbacks,
                        class_weight=class_weight, verbose=trainer.verbose)
    return {k: [float(v) for v in values] for k, values in history.history.items()}


def predict_probabilities(model: keras.Model, images: np.ndarray, batch_size: int, tta: bool) -> np.ndarray:
    """Class probabilities; with ``tta`` the mean over the image and its horizontal and vertical flips."""
    views = [images, images[:, :, ::-1], images[:, ::-1]] if tta else [images]
    return np.mean([model.predict(v.astype(np.float32), batch_size=batch_size, verbose=0) for v in views], axis=0)
