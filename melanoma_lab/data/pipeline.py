"""Decode images once into uint8 arrays, then feed them to Keras through tf.data."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import pandas as pd
import keras
import tensorflow as tf
from PIL import Image


@dataclass
class DecodedImages:
    images: np.ndarray  # (n, size, size, 3) uint8
    labels: np.ndarray  # (n,) int32 class indices
    files: pd.DataFrame  # the rows that decoded, in order
    failures: dict[str, str]  # path -> reason, for files that did not decode


def load_image(source: str | BinaryIO, size: int) -> np.ndarray:
    """Read any image file (a path or an open binary file) as RGB uint8 of shape (size, size, 3)."""
    with Image.open(source) as image:
        image = image.convert("RGB")
        if image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8)


def _try_load(path: str, size: int) -> np.ndarray | str:
    try:
        return load_image(path, size)
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        return f"{type(error).__name__}: {error}"


def decode(files: pd.DataFrame, classes: list[str], size: int) -> DecodedImages:
    """Decode every file in ``files``; files that fail are returned in ``failures``, not raised."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(pool.map(lambda p: _try_load(p, size), files["path"]))
    ok = np.array([not isinstance(r, str) for r in results], dtype=bool)
    failures = {p: r for p, r in zip(files["path"], results) if isinstance(r, str)}
    images = np.stack([r for r in results if not isinstance(r, str)]) if ok.any() else np.zeros(
        (0, size, size, 3), np.uint8)
    kept = files[ok].reset_index(drop=True)
    index = {name: i for i, name in enumerate(classes)}
    labels = np.array([index[label] for label in kept["label"]], dtype=np.int32)
    return DecodedImages(images=images, labels=labels, files=kept, failures=failures)


def make_dataset(data: DecodedImages, num_classes: int, batch_size: int, training: bool, seed: int,
                 augment: keras.layers.Layer | None = None) -> tf.data.Dataset:
    """Batches of (float32 image in [0, 255], one-hot label); shuffled and augmented only when ``training``."""
    dataset = tf.data.Dataset.from_tensor_slices((data.images, data.labels))
    if training:
        dataset = dataset.shuffle(len(data.labels), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32), tf.one_hot(y, num_classes)))
    if training and augment is not None:
        dataset = dataset.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
