"""The over-fitting gap from comparable numbers.

Keras' ``accuracy`` in a run's history is a running mean over the epoch's training batches: augmented images
(m2+), the imbalance strategy's generated copies (Augmentor, m3), dropout on, the raw weights while training
moves them (not the moving average of m5). Validation is scored on clean images by the weights and the
test-time views (``evaluation.tta``) that the run is evaluated with. Their difference mixes all of that into
"over-fitting". Here the train side is measured like the validation side: one prediction pass of the evaluated
model (the selected epoch's weights; the moving average where the optimizer keeps one) with the same views over
the training split's *original* images (at most ``evaluation.train_pass_images``, a random sample by
``trainer.seed`` beyond that), no augmentation, dropout off. The gaps are ``train_<name> - val_<name>`` for the
metrics of :data:`melanoma_lab.evaluation.registry.GAP_METRICS`, under :func:`registry.gap_key`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import numpy as np
import pandas as pd

from melanoma_lab.evaluation import registry
from melanoma_lab.evaluation.inference import predict_probabilities

if TYPE_CHECKING:
    import keras

    from melanoma_lab.data.pipeline import DecodedImages

TRAIN = "train"  # the prefix of the clean pass's metrics (registry.PREFIXES)
CHUNK = 512  # training rows predicted at a time: bounds the memory of the pass (a decoded split may be on disk)


def original_rows(files: pd.DataFrame) -> np.ndarray:
    """Row indices of the training split's original images: not the copies an imbalance strategy generated
    (``source`` other than ``original``)."""
    if "source" not in files:
        return np.arange(len(files))
    return np.flatnonzero(files["source"].to_numpy() == "original")


def train_pass_rows(files: pd.DataFrame, limit: int | None, seed: int) -> np.ndarray:
    """The original rows the clean pass predicts: all of them, or ``limit`` drawn at random by ``seed``."""
    rows = original_rows(files)
    if limit is not None and len(rows) > limit:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=limit, replace=False))
    return rows


def clean_train_metrics(model: keras.Model, train: DecodedImages, batch_size: int, tta: str, limit: int | None,
                        seed: int) -> dict[str, float]:
    """``train_<name>`` of each gap metric: one prediction pass of ``model`` with the ``tta`` views over the
    original training images (see :func:`train_pass_rows`)."""
    rows = train_pass_rows(train.files, limit, seed)
    if not len(rows):
        return {}
    chunks = [rows[start:start + CHUNK] for start in range(0, len(rows), CHUNK)]
    probabilities = np.concatenate([predict_probabilities(model, np.asarray(train.images[chunk]), batch_size, tta)
                                    for chunk in chunks])
    scored = registry.Scored(np.asarray(train.labels)[rows], np.asarray(probabilities, np.float32))
    values = registry.compute(scored, [registry.METRICS[name] for name in registry.GAP_METRICS])
    return {f"{TRAIN}_{name}": float(value) for name, value in values.items()} | {
        f"{TRAIN}_pass_images": float(len(rows))}


def gaps(train: Mapping[str, float], validation: Mapping[str, float]) -> dict[str, float]:
    """``registry.gap_key(name)``: ``train_<name>`` minus the validation evaluation's ``<name>`` (unprefixed, the
    same weights and views), for each gap metric both have."""
    return {registry.gap_key(name): train[f"{TRAIN}_{name}"] - validation[name] for name in registry.GAP_METRICS
            if f"{TRAIN}_{name}" in train and name in validation}
