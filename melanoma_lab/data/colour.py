"""Colour constancy: Shades of Gray (Finlayson & Trezzi, 2004), as used by ISIC challenge winners.

Pure numpy on decoded uint8 images, so training, evaluation, ``predict`` and serving apply exactly the same
correction (:mod:`melanoma_lab.study.preparation` after decoding, :class:`melanoma_lab.evaluation.inference.ModelSettings` for a
logged model).
"""

from __future__ import annotations

import numpy as np

CHUNK = 256  # images corrected at a time: bounds the float32 working memory


def _correct(images: np.ndarray, power: float, grey: float | None) -> np.ndarray:
    x = images.astype(np.float32)
    if np.isinf(power):
        illuminant, unit = x.max(axis=(-3, -2)), 255.0
    else:  # as a fraction of 255: no overflow for any p
        illuminant, unit = np.mean((x / 255.0) ** power, axis=(-3, -2)) ** (1.0 / power), 1.0
    norm = np.linalg.norm(illuminant, axis=-1, keepdims=True)
    if grey is None:  # neutral grey of the same norm: the image keeps its intensity
        gain = np.where(norm > 0, norm / np.maximum(illuminant * np.sqrt(3.0), 1e-12), 1.0)
    else:  # every channel's illuminant to the grey level
        gain = np.where(norm > 0, grey * unit / np.maximum(illuminant, 1e-12), 1.0)
    return np.clip(np.rint(x * gain[..., None, None, :]), 0, 255).astype(np.uint8)


def shades_of_gray(images: np.ndarray, power: float = 6.0, grey: float | None = None) -> np.ndarray:
    """Each image's colours rescaled so that its illuminant, estimated per channel as the ``power``-norm mean of
    the pixel values (as a fraction of 255), becomes neutral grey (``power`` 1: grey world; ``inf``: max-RGB).
    ``grey`` None keeps each image's own intensity (the published method: only the cast goes); a value in (0, 1]
    maps every illuminant to that same grey level, so an exposure change (all channels x0.8, say) goes too.
    ``images``: one (h, w, 3) or a batch (n, h, w, 3) of uint8; returns a new uint8 array of the same shape. A
    black image (no illuminant) is returned unchanged."""
    if power < 1:
        raise ValueError(f"the Shades of Gray p-norm must be at least 1, not {power!r}")
    if grey is not None and not 0 < grey <= 1:
        raise ValueError(f"the Shades of Gray grey level must be in (0, 1] (a fraction of 255), not {grey!r}")
    if images.ndim == 3:
        return _correct(images, power, grey)
    out = np.empty_like(images, dtype=np.uint8)
    for start in range(0, len(images), CHUNK):
        out[start:start + CHUNK] = _correct(images[start:start + CHUNK], power, grey)
    return out
