"""Colour constancy: Shades of Gray (Finlayson & Trezzi, 2004), as used by ISIC challenge winners.

Pure numpy on decoded uint8 images, so training, evaluation, ``predict`` and serving apply exactly the same
correction (:mod:`melanoma_lab.study.preparation` after decoding, :class:`melanoma_lab.evaluation.inference.ModelSettings` for a
logged model).
"""

from __future__ import annotations

import numpy as np

CHUNK = 256  # images corrected at a time: bounds the float32 working memory


def _correct(images: np.ndarray, power: float) -> np.ndarray:
    x = images.astype(np.float32)
    if np.isinf(power):
        illuminant = x.max(axis=(-3, -2))
    else:
        illuminant = np.mean((x / 255.0) ** power, axis=(-3, -2)) ** (1.0 / power)  # scaled: no overflow for any p
    norm = np.linalg.norm(illuminant, axis=-1, keepdims=True)
    gain = np.where(norm > 0, norm / np.maximum(illuminant * np.sqrt(3.0), 1e-12), 1.0)
    return np.clip(np.rint(x * gain[..., None, None, :]), 0, 255).astype(np.uint8)


def shades_of_gray(images: np.ndarray, power: float = 6.0) -> np.ndarray:
    """Each image's colours rescaled so that its illuminant, estimated per channel as the ``power``-norm mean of
    the pixel values, becomes neutral grey (``power`` 1: grey world; ``inf``: max-RGB). ``images``: one
    (h, w, 3) or a batch (n, h, w, 3) of uint8; returns a new uint8 array of the same shape. A black image (no
    illuminant) is returned unchanged."""
    if power < 1:
        raise ValueError(f"the Shades of Gray p-norm must be at least 1, not {power!r}")
    if images.ndim == 3:
        return _correct(images, power)
    out = np.empty_like(images, dtype=np.uint8)
    for start in range(0, len(images), CHUNK):
        out[start:start + CHUNK] = _correct(images[start:start + CHUNK], power)
    return out
