"""Online augmentation of training batches with Keras preprocessing layers (images in [0, 255])."""

from __future__ import annotations

import keras
from omegaconf import DictConfig


def build_augmentation(cfg: DictConfig, seed: int) -> keras.Sequential | None:
    """A layer stack for ``cfg`` (flip, rotation, zoom, translation, contrast, brightness), or None when
    every strength is zero."""
    layers: list[keras.layers.Layer] = []
    if cfg.flip != "none":
        layers.append(keras.layers.RandomFlip(cfg.flip, seed=seed))
    if cfg.rotation > 0:
        layers.append(keras.layers.RandomRotation(cfg.rotation, fill_mode="reflect", seed=seed + 1))
    if cfg.zoom > 0:
        layers.append(keras.layers.RandomZoom(cfg.zoom, fill_mode="reflect", seed=seed + 2))
    if cfg.translation > 0:
        layers.append(keras.layers.RandomTranslation(cfg.translation, cfg.translation, fill_mode="reflect",
                                                     seed=seed + 3))
    if cfg.contrast > 0:
        layers.append(keras.layers.RandomContrast(cfg.contrast, value_range=(0, 255), seed=seed + 4))
    if cfg.brightness > 0:
        layers.append(keras.layers.RandomBrightness(cfg.brightness, value_range=(0, 255), seed=seed + 5))
    return keras.Sequential(layers, name="augmentation") if layers else None
