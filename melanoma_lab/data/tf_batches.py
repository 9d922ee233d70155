"""Training batches through ``tf.data`` (the TensorFlow backend's loader: see :mod:`melanoma_lab.data.batches`)."""

from __future__ import annotations

import keras
import tensorflow as tf

from melanoma_lab.data.pipeline import DecodedImages, augment_batch, row_reader


def make_batches(data: DecodedImages, num_classes: int, batch_size: int, training: bool, seed: int,
                 augment: keras.layers.Layer | None = None) -> tf.data.Dataset:
    """Only image indices are shuffled and batched in ``tf.data``; each batch is then read from the decoded
    images (in RAM or a memory-mapped file), so the images are never copied into TensorFlow whole; the
    augmentation runs in the graph on parallel calls."""
    read, labels, size = row_reader(data.images), tf.constant(data.labels), data.images.shape[1:]
    dataset = tf.data.Dataset.range(len(data.labels))
    if training:
        dataset = dataset.shuffle(len(data.labels), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size).map(
        lambda i: (tf.ensure_shape(tf.numpy_function(read, [i], tf.uint8), [None, *size]), tf.gather(labels, i)),
        num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.map(lambda x, y: (tf.cast(x, tf.float32), tf.one_hot(y, num_classes)))
    if training and augment is not None:
        dataset = dataset.map(lambda x, y: augment_batch(augment, x, y), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
