"""Keras callbacks of the ``callbacks`` group: a mapping of named callbacks, each by ``_target_`` (a function here
or any ``keras.callbacks`` class or function of your own), built in order; one set to null is left out.

A builder takes what it needs of the run by parameter name: ``monitor`` (``trainer.monitor``), ``mode`` (max for
accuracies, min for losses), ``output_dir`` (the run folder) and ``backup_dir`` (the epoch backup that
``trainer.resume=true`` continues from).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from melanoma_lab.config.plugins import Annotated, Range

TENSORBOARD = "tensorboard"  # the folder (in the run folder) and the artifact path of TensorBoard's logs

if TYPE_CHECKING:
    import keras


def early_stopping(monitor: str, mode: str, patience: Annotated[int, Range(0)] = 5,
                   restore_best_weights: bool = True) -> keras.callbacks.Callback:
    """Stop when ``monitor`` has not improved for ``patience`` epochs; keep the best epoch's weights."""
    import keras

    return keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience,
                                         restore_best_weights=restore_best_weights)


def best_checkpoint(monitor: str, mode: str, output_dir: Path) -> keras.callbacks.Callback:
    """Keep the best epoch (by ``monitor``) in ``<run folder>/checkpoints/best.keras``."""
    import keras

    (Path(output_dir) / "checkpoints").mkdir(parents=True, exist_ok=True)
    return keras.callbacks.ModelCheckpoint(Path(output_dir) / "checkpoints" / "best.keras", monitor=monitor,
                                           mode=mode, save_best_only=True)


def tensorboard(output_dir: Path, histogram_freq: Annotated[int, Range(0)] = 0) -> keras.callbacks.Callback:
    """TensorBoard logs of the run in ``<run folder>/tensorboard`` (attached to the MLflow run as ``tensorboard/``
    when training ends; ``tensorboard --logdir`` reads either). Off by default: add it with
    ``+callbacks.tensorboard._target_=melanoma_lab.components.callbacks.tensorboard``."""
    import keras

    return keras.callbacks.TensorBoard(log_dir=str(Path(output_dir) / TENSORBOARD), histogram_freq=histogram_freq)


def backup_and_restore(backup_dir: Path) -> keras.callbacks.Callback:
    """An epoch-level backup (deleted when training ends) that ``trainer.resume=true`` continues from."""
    import keras

    return keras.callbacks.BackupAndRestore(str(backup_dir))
