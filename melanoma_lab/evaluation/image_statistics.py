"""Model-independent statistics of decoded images: colour, contrast, texture, flatness, periodicity.

:func:`image_statistics` turns (n, h, w, 3) uint8 images into (n, d) features that separate dermoscopic lesions
from blank, flat, noisy, printed or patterned pictures; :mod:`melanoma_lab.evaluation.ood` fits their distribution
on a run's training images. Pure numpy, a chunk of images at a time.
"""

from __future__ import annotations

import numpy as np

CHUNK = 128  # images at a time: bounds the float working memory
EPS = 1e-3
NAMES = ("mean_red", "mean_green", "mean_blue", "red_minus_green", "yellow_minus_blue", "log_std_red_green",
         "log_std_yellow_blue", "saturation", "log_std_luminance", "luminance_p02", "luminance_p50",
         "luminance_p98", "log_fine_gradient", "log_coarse_gradient", "log_laplacian", "logit_flat_fraction",
         "log_gradient_anisotropy", "centre_minus_border", "histogram_entropy", "logit_spectral_peak",
         "log_colours")


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 0.002, 0.998)
    return np.log(p / (1 - p))


def _pool(x: np.ndarray) -> np.ndarray:
    """2x2 mean pooling of (n, h, w) (an odd last row/column dropped)."""
    h, w = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
    x = x[:, :h, :w]
    return (x[:, 0::2, 0::2] + x[:, 1::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 1::2]) / 4


def _gradients(lum: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.abs(np.diff(lum, axis=2))[:, :-1, :], np.abs(np.diff(lum, axis=1))[:, :, :-1]


def _per_image(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1)


def _colour(x: np.ndarray) -> list[np.ndarray]:
    """Mean R, G, B, the mean and log spread of two opponent channels, mean saturation (x: floats in [0, 1])."""
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    rg, yb = r - g, (r + g) / 2 - b
    top, bottom = np.maximum(np.maximum(r, g), b), np.minimum(np.minimum(r, g), b)
    saturation = (top - bottom) / np.maximum(top, EPS)
    return [r.mean(axis=(1, 2)), g.mean(axis=(1, 2)), b.mean(axis=(1, 2)), rg.mean(axis=(1, 2)),
            yb.mean(axis=(1, 2)), np.log(_per_image(rg).std(axis=1) + EPS), np.log(_per_image(yb).std(axis=1) + EPS),
            saturation.mean(axis=(1, 2))]


def _texture(lum: np.ndarray) -> list[np.ndarray]:
    """Contrast and luminance percentiles; fine and coarse gradient energy, Laplacian energy, the share of flat
    pixels and the gradients' anisotropy (stripes)."""
    dx, dy = _gradients(lum)
    magnitude = dx + dy
    cdx, cdy = _gradients(_pool(lum))
    laplacian = np.abs(lum[:, 1:-1, 1:-1] * 4 - lum[:, :-2, 1:-1] - lum[:, 2:, 1:-1] - lum[:, 1:-1, :-2]
                       - lum[:, 1:-1, 2:])
    return [np.log(_per_image(lum).std(axis=1) + EPS), *np.percentile(_per_image(lum), [2, 50, 98], axis=1),
            np.log(magnitude.mean(axis=(1, 2)) + EPS), np.log((cdx + cdy).mean(axis=(1, 2)) + EPS),
            np.log(laplacian.mean(axis=(1, 2)) + EPS), _logit((magnitude < 1.5 / 255).mean(axis=(1, 2))),
            np.log((dx.mean(axis=(1, 2)) + EPS) / (dy.mean(axis=(1, 2)) + EPS))]


def _layout(lum: np.ndarray, images: np.ndarray) -> list[np.ndarray]:
    """Centre minus border luminance (a lesion is mostly darker than the skin around it), the luminance
    histogram's entropy, the share of the spectrum in its 4 strongest frequencies (periodic patterns) and the
    number of distinct colours (4 bits per channel: palettes, drawings)."""
    n, h, w = lum.shape
    centre = lum[:, h // 4:h - h // 4, w // 4:w - w // 4].mean(axis=(1, 2))
    ring = np.ones((h, w), bool)
    ring[h // 8:h - h // 8, w // 8:w - w // 8] = False
    histogram = np.stack([np.histogram(row, bins=32, range=(0, 1))[0] for row in _per_image(lum)]) / (h * w)
    entropy = -(histogram * np.log(np.maximum(histogram, 1e-12))).sum(axis=1)
    spectrum = _per_image(np.abs(np.fft.rfft2(lum - lum.mean(axis=(1, 2), keepdims=True))) ** 2)
    peak = np.partition(spectrum, -4, axis=1)[:, -4:].sum(axis=1) / np.maximum(spectrum.sum(axis=1), 1e-12)
    quantised = images[..., 0].astype(np.int32) // 16 * 256 + images[..., 1] // 16 * 16 + images[..., 2] // 16
    colours = np.array([len(np.unique(row)) for row in _per_image(quantised)], float)
    return [centre - lum[:, ring].mean(axis=1), entropy, _logit(peak), np.log(colours)]


def _chunk_statistics(images: np.ndarray) -> np.ndarray:
    x = images.astype(np.float32) / 255
    lum = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
    columns = _colour(x) + _texture(lum) + _layout(lum, images)
    return np.stack(columns, axis=1).astype(np.float64)


def image_statistics(images: np.ndarray) -> np.ndarray:
    """(n, len(NAMES)) statistics of (n, h, w, 3) uint8 images (h, w >= 8)."""
    if len(images) == 0:
        return np.zeros((0, len(NAMES)))
    return np.concatenate([_chunk_statistics(np.asarray(images[start:start + CHUNK]))
                           for start in range(0, len(images), CHUNK)])
