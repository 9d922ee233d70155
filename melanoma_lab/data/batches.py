"""Training batches for ``model.fit`` on any Keras 3 backend: (float32 image in [0, 255], one-hot label), shuffled
and augmented only when training. The model's own Rescaling layer maps [0, 255] to [0, 1].

:func:`make_dataset` takes the loader of the running backend from :data:`LOADERS` (a module with ``make_batches``
and the signature of :func:`make_batches`); a backend not listed gets :class:`ArrayBatches`, a
``keras.utils.PyDataset`` that needs no TensorFlow. Both read only the rows of the batch in flight from the decoded
images (in RAM or memory-mapped, :mod:`melanoma_lab.data.pipeline`).
"""

from __future__ import annotations

import importlib
import math

import keras
import numpy as np

from melanoma_lab.data.pipeline import DecodedImages, augment_batch, row_reader

# backend -> module whose make_batches() feeds it. tf.data trains M2 faster than the PyDataset on TensorFlow
# (measured in the issue-17 work: README, "Backends"); the others get ArrayBatches.
LOADERS = {"tensorflow": "melanoma_lab.data.tf_batches"}


class ArrayBatches(keras.utils.PyDataset):
    """Batches of decoded uint8 images as float32 with one-hot labels. When ``training``, the order is a fresh
    permutation from a ``numpy`` Generator seeded with ``seed`` at every epoch, and ``augment`` (Keras preprocessing
    layers, backend-neutral) is applied to each batch."""

    def __init__(self, data: DecodedImages, num_classes: int, batch_size: int, training: bool, seed: int,
                 augment: keras.layers.Layer | None = None, **kwargs):
        super().__init__(**kwargs)
        self.read, self.labels, self.batch_size = row_reader(data.images), data.labels, batch_size
        self.one_hot = np.eye(num_classes, dtype=np.float32)
        self.training, self.augment = training, augment if training else None
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(self.labels)) if training else np.arange(len(self.labels))
        self.part, self.parts = 0, 1

    def shard(self, part: int, parts: int) -> "ArrayBatches":
        """This process's share when ``parts`` processes train on every global batch together: rows
        ``part``/``parts`` of each batch (all draw the same order from the same seed), full batches only (a
        shorter last one would give the processes different step counts)."""
        if self.batch_size % parts:
            raise ValueError(f"batch size {self.batch_size} is not a multiple of {parts} processes")
        self.part, self.parts = part, parts
        return self

    def __len__(self) -> int:
        if self.parts > 1:
            return len(self.labels) // self.batch_size
        return math.ceil(len(self.labels) / self.batch_size)

    def __getitem__(self, index: int):
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        if self.parts > 1:
            share = self.batch_size // self.parts
            rows = rows[self.part * share:(self.part + 1) * share]
        images, labels = self.read(rows).astype(np.float32), self.one_hot[self.labels[rows]]
        if self.augment is not None:
            images, labels = augment_batch(self.augment, images, labels)
        return images, labels

    def on_epoch_end(self) -> None:
        if self.training:
            self.order = self.rng.permutation(len(self.labels))


def make_batches(data: DecodedImages, num_classes: int, batch_size: int, training: bool, seed: int,
                 augment: keras.layers.Layer | None = None) -> ArrayBatches:
    return ArrayBatches(data, num_classes, batch_size, training, seed, augment)


def make_dataset(data: DecodedImages, num_classes: int, batch_size: int, training: bool, seed: int,
                 augment: keras.layers.Layer | None = None):
    """The batches of ``data`` from the running backend's loader (:data:`LOADERS`)."""
    loader = LOADERS.get(keras.backend.backend())
    make = importlib.import_module(loader).make_batches if loader else make_batches
    return make(data, num_classes, batch_size, training, seed, augment)
