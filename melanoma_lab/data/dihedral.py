"""Rotated and flipped copies: the perceptual hash of each of an image's 8 dihedral views (rotations by quarter
turns, each also mirrored), and the pixel check that must confirm a match found only through a rotated view.

View 0 is the image itself and its hash is exactly ``imagehash.phash`` (8x8 low frequencies of the DCT of a
32x32 grey thumbnail), the audit's near-copy hash. A copy ``B = g(A)`` rotated or flipped by ``g`` has the hash of
view ``g`` of ``A``, so two images are *dihedral candidates* when some view of one is within the near-copy
distance of the other's hash. A candidate found only at a rotated view is not trusted on the hash: eight chances at
a 64-bit hash of a centred blob match different lesions (on the real ISIC 9-class Train copy, 11 such pairs at
distance <= 4, every one two different lesions, often of different classes). It counts as a copy only when the
high-pass (detail) correlation of the two 64x64 grey thumbnails, the first turned to the matching view, is at least
:data:`MIN_CORRELATION`: the 11 different-lesion pairs of the real copy score at most 0.58, while rotated or
flipped copies of its images, re-encoded (JPEG quality 60-90) and resized (150-300 px), score at least 0.93.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np
import scipy.fftpack
from PIL import Image
from scipy.ndimage import gaussian_filter

VIEWS = 8  # the dihedral group of the square: 4 quarter turns, each also mirrored
MIN_CORRELATION = 0.8  # high-pass correlation a match at a rotated view needs (see the module docstring)
THUMBNAIL = 64  # side of the grey thumbnails compared by the confirmation
DETAIL_SIGMA = 3.0  # the blur (in thumbnail pixels) subtracted to keep the detail: hairs, pigment network, texture
_HASHED = 32  # imagehash.phash's thumbnail (hash_size 8 x highfreq_factor 4)

_identity_hashes: dict[str, str] = {}  # sha256 -> hash of view 0, filled by every hashing in this process


def view(array: np.ndarray, k: int) -> np.ndarray:
    """View ``k`` (0-7) of an image array (rows, columns[, channels]): ``k // 2`` quarter turns, mirrored if odd."""
    turned = np.rot90(array, k // 2)
    return turned[:, ::-1] if k % 2 else turned


def _grey(image: Image.Image, side: int) -> np.ndarray:
    return np.asarray(image.convert("L").resize((side, side), Image.Resampling.LANCZOS), dtype=float)


_SIGNS = (-1.0) ** np.arange(8)  # mirroring a signal multiplies its DCT-II coefficient k by (-1)**k


def _low_view(low: np.ndarray, k: int) -> np.ndarray:
    """The low DCT coefficients of view ``k`` of an image, from the image's own: :func:`view` in frequency space
    (a quarter turn ``a[:, ::-1].T`` mirrors the columns, then transposes), so one DCT serves all 8 hashes."""
    for _ in range(k // 2):
        low = (low * _SIGNS[None, :]).T
    return low * _SIGNS[None, :] if k % 2 else low


def view_hashes(image: Image.Image) -> list[str]:
    """The perceptual hash (16 hex digits) of each of the 8 views of ``image``; the first is ``imagehash.phash``."""
    pixels = _grey(image, _HASHED)
    low = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)[:8, :8]
    lows = np.stack([_low_view(low, k) for k in range(VIEWS)]).reshape(VIEWS, -1)
    bits = np.packbits(lows > np.median(lows, axis=1, keepdims=True), axis=1)
    return [row.tobytes().hex() for row in bits]


def remember(sha256: str, hashes: list[str]) -> None:
    """Keep an image's hash (view 0) for :func:`identity_hashes`, by contents."""
    _identity_hashes[sha256] = hashes[0]


def file_view_hashes(path: str) -> list[str] | None:
    """:func:`view_hashes` of an image file (None: it does not decode)."""
    try:
        with Image.open(path) as image:
            return view_hashes(image.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def identity_hashes(paths: list[str], sha256: list[str]) -> list[str]:
    """The perceptual hash of each file ("" if unreadable): remembered by contents where this process hashed the
    same bytes before (the audit hashed every catalog image), else computed."""
    missing = [(p, s) for p, s in zip(paths, sha256) if s not in _identity_hashes]
    if missing:
        with ThreadPoolExecutor() as pool:
            for (_, sha), found in zip(missing, pool.map(file_view_hashes, [p for p, _ in missing])):
                _identity_hashes[sha] = found[0] if found else ""
    return [_identity_hashes[s] for s in sha256]


def packed(hashes: list[str]) -> np.ndarray:
    """Hex hashes as unsigned 64-bit integers (an empty hash, of an unreadable file, becomes 0: leave those out)."""
    return np.array([int(h, 16) if h else 0 for h in hashes], dtype=np.uint64)


def pairs(query: np.ndarray, reference: np.ndarray, max_distance: int, triangle: bool = False
          ) -> Iterator[tuple[int, int, int, int]]:
    """``(i, j, k, d)`` for each query image ``i`` (``query``: its packed view hashes, shape (n, 8)) and reference
    ``j`` (``reference``: packed view-0 hashes, shape (m,)) where view ``k`` of ``i`` is within ``max_distance``
    bits (``d``) of ``j``: view 0 whenever it is within the distance (the plain near-copy match), else the view
    with the fewest bits. ``triangle``: query and reference are the same images, only ``j > i``."""
    for i in range(len(query)):
        start = i + 1 if triangle else 0
        distance = np.bitwise_count(query[i][None, :] ^ reference[start:, None])  # (m - start, 8)
        for j in np.flatnonzero(distance.min(axis=1) <= max_distance):
            k = 0 if distance[j, 0] <= max_distance else int(distance[j].argmin())
            yield i, int(j) + start, k, int(distance[j, k])


def _detail(image: Image.Image) -> np.ndarray:
    grey = _grey(image, THUMBNAIL)
    return grey - gaussian_filter(grey, DETAIL_SIGMA)


def correlation(path_a: str, path_b: str, k: int) -> float:
    """High-pass correlation of view ``k`` of image ``a`` with image ``b`` (1: the same picture); nan when either
    file cannot be read."""
    try:
        with Image.open(path_a) as a, Image.open(path_b) as b:
            x, y = view(_detail(a.convert("RGB")), k), _detail(b.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError):
        return float("nan")
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / max(np.sqrt((x * x).sum() * (y * y).sum()), 1e-12))


def confirmed(score: float) -> bool:
    """Whether a rotated-view match with this :func:`correlation` counts as a copy."""
    return bool(score >= MIN_CORRELATION)
