"""Online augmentation of training batches with Keras preprocessing layers."""

from __future__ import annotations

import keras
from omegaconf import DictConfig


def build_augmentation(cfg: DictConfig, seed: int) -> keras.Sequential | None:
    """A layer stack for ``cfg`` (flip, rotation, zoom), or None when it would do nothing."""
    layers: list[keras.layers.Layer] = []
    if cfg.flip != "none":
        layers.append(keras.layers.RandomFlip(cfg.flip, seed=seed))
    if cfg.rotation > 0:
        layers.append(keras.layers.RandomRotation(cfg.rotation, fill_mode="reflect", seed=seed + 1))
    if cfg.zoom > 0:
        layers.append(keras.layers.RandomZoom(cfg.zoom, fill_mode="reflect", seed=seed + 2))
    return keras.Sequential(layers, name="augmentation") if layers else None
