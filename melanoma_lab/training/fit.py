"""Fit a compiled Keras model: loss, learning-rate schedule, callbacks and history (precision, seeding and
distribution: :mod:`melanoma_lab.runtime`)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, NamedTuple

import keras
import numpy as np
from omegaconf import DictConfig

from melanoma_lab.components.augmentation import build_augmentation
from melanoma_lab.data.batches import make_dataset
from melanoma_lab.training.ema import SwapEMAWeights
from melanoma_lab.errors import ConfigError
from melanoma_lab.config.plugins import build
from melanoma_lab.data.pipeline import PreparedData
from melanoma_lab.evaluation import registry
from melanoma_lab.evaluation.inference import predict_probabilities, tta_mode
from melanoma_lab.runtime import runtime, set_precision
from melanoma_lab.tracking.provenance import runtime_tags
from melanoma_lab.tracking.epochs import EpochLogger
from melanoma_lab.tracking.run import RunTracker

log = logging.getLogger(__name__)


class TrainingRecipe(NamedTuple):
    """The config groups that build and fit a model, and nothing else of a composed config (``dataset`` for its
    ``image_size`` and ``batch_size``; ``evaluation`` for the views each epoch is validated, hence selected, with:
    :func:`epoch_views`): an orchestrator picks them by name, ``TrainingRecipe(*map(cfg.get,
    TrainingRecipe._fields))``."""

    model: DictConfig
    loss: DictConfig
    optimizer: DictConfig
    lr_schedule: DictConfig
    callbacks: DictConfig | None
    augmentation: DictConfig | None
    trainer: DictConfig
    dataset: DictConfig
    evaluation: DictConfig


def epoch_views(evaluation: DictConfig) -> str:
    """The views of each epoch's validation: ``evaluation.epoch_tta``, or when it is null the ``evaluation.tta``
    views that score the final model (a cheaper selection, e.g. one view where the model is scored with eight,
    is a config value: per-epoch validation with 8 views was over half of m6's fine-tuning epoch on a CPU)."""
    views = evaluation.get("epoch_tta")
    return tta_mode(evaluation.tta if views is None else views)


def build_loss(loss: DictConfig) -> keras.losses.Loss:
    """The ``loss`` group's loss on one-hot labels."""
    return build(loss, "loss")


def learning_rate(recipe: TrainingRecipe, steps_per_epoch: int):
    """The optimizer's learning rate as the ``lr_schedule`` group makes it from ``optimizer.learning_rate``, over
    the epochs after the head-only ones (``trainer.head_epochs``, which have a constant rate of their own)."""
    epochs = recipe.trainer.epochs - recipe.trainer.get("head_epochs", 0)
    return build(recipe.lr_schedule, "lr_schedule", learning_rate=recipe.optimizer.learning_rate,
                 total_steps=epochs * steps_per_epoch, steps_per_epoch=steps_per_epoch)


def best_epoch(history: dict[str, list[float]], monitor: str, first: int = 0) -> int:
    """Index of the best epoch by ``monitor`` (highest or lowest as the metric registry's direction says), from
    epoch ``first`` on (the head-only epochs of a fine-tuned model are never selected)."""
    monitor = registry.monitor_key(monitor)
    values = np.asarray(history[monitor][first:])
    return first + int(np.argmax(values) if registry.mode(monitor) == "max" else np.argmin(values))


class ValidationMetrics(keras.callbacks.Callback):
    """One prediction of the validation images per epoch, averaged over the ``tta`` views
    (:func:`melanoma_lab.evaluation.inference.predict_probabilities`, as the final evaluation scores them), adding
    ``val_loss`` and ``val_<name>`` of each epoch metric of the registry (``val_accuracy``,
    ``val_balanced_accuracy``...) to the epoch's logs for the callbacks after it (early stopping, checkpoint: the
    epoch selection)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, num_classes: int, loss: keras.losses.Loss,
                 batch_size: int, tta: str):
        super().__init__()
        self.images, self.labels, self.batch_size, self.loss = images, labels, batch_size, loss
        self.tta = tta_mode(tta)
        self.one_hot = np.eye(num_classes, dtype=np.float32)[labels]

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        with runtime().local_prediction(self.model) as model:
            probabilities = predict_probabilities(model, self.images, self.batch_size, self.tta)
        if logs is not None:
            logs["val_loss"] = float(self.loss(self.one_hot, probabilities))
            epoch = [metric for metric in registry.computed() if registry.EPOCH in metric.shown]
            scored = registry.Scored(self.labels, np.asarray(probabilities, np.float32))
            logs |= {f"val_{name}": float(value) for name, value in registry.compute(scored, epoch).items()}


class LearningRateLogger(keras.callbacks.Callback):
    """Add the optimizer's current learning rate to each epoch's logs."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


HEAD_CALLBACKS = (ValidationMetrics, LearningRateLogger, EpochLogger)  # what the head-only epochs run: no stopping,
# checkpoint or backup (those select among, and resume, the fine-tuning epochs)


def build_callbacks(callbacks: DictConfig | None, monitor: str, output_dir: Path, tracker: RunTracker,
                    validation: ValidationMetrics, backup_dir: Path) -> list[keras.callbacks.Callback]:
    """Validation metrics first (the others read them), then logging, then the ``callbacks`` group in order (by
    default an epoch backup in ``backup_dir`` for ``trainer.resume=true``, early stopping and the best checkpoint),
    each given the ``monitor``, ``mode``, ``output_dir`` and ``backup_dir`` its builder asks for."""
    monitor = registry.monitor_key(monitor)
    context = {"monitor": monitor, "mode": registry.mode(monitor), "output_dir": output_dir,
               "backup_dir": backup_dir}
    configured = [build(node, f"callbacks.{name}", **context) for name, node in (callbacks or {}).items()
                  if node is not None]
    return [validation, LearningRateLogger(), EpochLogger(tracker), *configured]


def steps_per_epoch(batch_size: int, data: PreparedData) -> int:
    return math.ceil(len(data.train.labels) / batch_size)


def compile_model(recipe: TrainingRecipe, num_classes: int, steps: int) -> tuple[keras.Model, keras.losses.Loss]:
    """The configured model, compiled with its loss and optimizer under ``trainer.strategy``."""
    size = recipe.dataset.image_size
    set_precision(recipe.trainer.precision)
    with runtime().scope(recipe.trainer.strategy):
        model = build(recipe.model, "model", input_shape=(size, size, 3), num_classes=num_classes)
        loss = build_loss(recipe.loss)
        optimizer = build(recipe.optimizer, "optimizer", replace={"learning_rate": learning_rate(recipe, steps)})
        model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    return model, loss


def recompile(model: keras.Model, loss: keras.losses.Loss, optimizer: keras.optimizers.Optimizer) -> None:
    """Compile the built ``model`` again with ``optimizer`` (its trainable flags as they are now), under the
    strategy it was built with."""
    with runtime().model_scope(model):
        model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])


def training_inputs(recipe: TrainingRecipe, data: PreparedData, loss: keras.losses.Loss
                    ) -> tuple[Any, ValidationMetrics, dict[int, float] | None]:
    """The augmented training batches, the per-epoch validation callback and the class weights of ``data``."""
    seed, batch, num_classes = recipe.trainer.seed, recipe.dataset.batch_size, len(data.classes)
    train_ds = make_dataset(data.train, num_classes, batch, True, seed, build_augmentation(recipe.augmentation, seed))
    train_ds = runtime().training_batches(train_ds, batch)  # what this process feeds (all of it, but multi_worker)
    validation = ValidationMetrics(data.validation.images.astype(np.float32), data.validation.labels, num_classes,
                                   loss, batch, epoch_views(recipe.evaluation))
    return train_ds, validation, data.class_weight


def train_model(recipe: TrainingRecipe, data: PreparedData, tracker: RunTracker, output_dir: Path,
                backup_dir: Path) -> tuple[keras.Model, dict[str, list[float]]]:
    """Build the configured model and optimizer and fit it on the prepared training split."""
    trainer = recipe.trainer
    model, loss = compile_model(recipe, len(data.classes), steps_per_epoch(recipe.dataset.batch_size, data))
    tracker.set_tags(runtime_tags(keras.mixed_precision.global_policy().name))  # as set by compile_model
    train_ds, validation, class_weight = training_inputs(recipe, data, loss)
    callbacks = build_callbacks(recipe.callbacks, trainer.monitor, output_dir, tracker, validation, backup_dir)
    if model.optimizer.use_ema:  # validate, select and keep the averaged weights (swapped in at each epoch's end)
        callbacks.insert(0, SwapEMAWeights(swap_on_epoch=True))
    history: dict[str, list[float]] = {}
    head_epochs = trainer.head_epochs
    if head_epochs and not (tracker.resumed and any(Path(backup_dir).glob("*"))):  # a backup is of later epochs
        head = [callback for callback in callbacks if isinstance(callback, HEAD_CALLBACKS)]
        history = fit_head(model, recipe, loss, train_ds, head, class_weight)
    later = fit(model, train_ds, trainer, callbacks, class_weight, initial_epoch=head_epochs)
    history = {key: history.get(key, []) + values for key, values in later.items()}
    model = runtime().local_model(model)  # multi_worker: evaluate and save from this process alone
    if tracker.resumed:  # fit() only returns the epochs of this invocation; the run has them all
        history = tracker.epoch_history(list(history))
    return model, history


def keras_verbosity(trainer: DictConfig) -> int:
    """Keras' ``verbose`` for ``trainer.verbose``: 3 (TensorFlow's and MLflow's logs too, :mod:`melanoma_lab.cli.quiet`)
    prints as 2, a line per epoch. ``model.fit`` is always given ``shuffle=False``: the training batches
    (:mod:`melanoma_lab.data.batches`) shuffle themselves from the run's seed, and Keras would only warn that it
    ignores ``shuffle`` (``tf.data``) or reorder the batches once more from its own random state (a PyDataset)."""
    return min(int(trainer.verbose), 2)


def fit(model: keras.Model, train: Any, trainer: DictConfig, callbacks: list[keras.callbacks.Callback],
        class_weight: dict[int, float] | None = None, initial_epoch: int = 0) -> dict[str, list]:
    """Train up to epoch ``trainer.epochs`` from ``initial_epoch`` (validation runs in the callbacks); returns
    Keras' per-epoch history."""
    history = model.fit(train, epochs=trainer.epochs, callbacks=callbacks, class_weight=class_weight,
                        verbose=keras_verbosity(trainer), initial_epoch=initial_epoch, shuffle=False)
    return {k: [float(v) for v in values] for k, values in history.history.items()}


def backbones(model: keras.Model) -> list[keras.Model]:
    """The pretrained parts of ``model``: the models nested in it (an EfficientNet-Lite or keras.applications
    backbone under its new head)."""
    return [layer for layer in model.layers if isinstance(layer, keras.Model)]


def fit_head(model: keras.Model, recipe: TrainingRecipe, loss: keras.losses.Loss, train: Any,
             callbacks: list[keras.callbacks.Callback], class_weight: dict[int, float] | None) -> dict[str, list]:
    """``trainer.head_epochs`` of the new head alone, the backbone frozen (its batch norm in inference mode as
    always), at the constant ``trainer.head_learning_rate``: a random head's first large gradients would otherwise
    run through the pretrained weights. Then the model's trainable flags are as configured again, and it is
    compiled with the run's own optimizer and schedule for the epochs after."""
    trainer, frozen = recipe.trainer, backbones(model)
    if not frozen:
        raise ConfigError(f"trainer.head_epochs={trainer.head_epochs} trains a new head on a frozen pretrained "
                          f"backbone, but model={recipe.model.get('name', recipe.model._target_)} has none: use "
                          "model=efficientnet_lite or model=transfer, or trainer.head_epochs=0")
    flags = [(layer, layer.trainable) for layer in frozen] + [(layer, layer.trainable) for backbone in frozen
                                                              for layer in backbone.layers]
    for backbone in frozen:
        backbone.trainable = False
    optimizer = model.optimizer
    with runtime().model_scope(model):
        head_optimizer = build(recipe.optimizer, "optimizer", replace={"learning_rate": trainer.head_learning_rate})
    recompile(model, loss, head_optimizer)
    if optimizer.use_ema:
        callbacks = [SwapEMAWeights(swap_on_epoch=True), *callbacks]
    log.info("head-only epochs: %d, backbone frozen, learning rate %g", trainer.head_epochs,
             trainer.head_learning_rate)
    history = model.fit(train, epochs=trainer.head_epochs, callbacks=callbacks, class_weight=class_weight,
                        verbose=keras_verbosity(trainer), shuffle=False)
    for layer, trainable in flags:  # a model's flag sets all its layers': the model first, then each layer
        layer.trainable = trainable
    recompile(model, loss, optimizer)
    return {k: [float(v) for v in values] for k, values in history.history.items()}

