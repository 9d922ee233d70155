"""Generated pictures that are not dermoscopic lesions, to measure the input check (:mod:`melanoma_lab.evaluation.ood`).

Seven kinds, each drawn with random colours from one seeded generator and passed through a real image file (so
they are decoded, converted and resized exactly like user input, :func:`melanoma_lab.data.pipeline.load_image`):
``blank`` (a 1-pixel image), ``solid`` (one colour), ``noise`` (uniform, Gaussian or salt-and-pepper pixels),
``text`` (lines of words rendered with PIL's font), ``gradient`` (linear or radial between two colours),
``pattern`` (stripes, checkerboards, concentric rings, a grid) and ``clouds`` (smoothed noise, a natural-texture
stand-in). Every other one is saved as a palette GIF, the rest as PNG or JPEG. Nothing here comes from a dataset.
"""

from __future__ import annotations

import io
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from melanoma_lab.data.pipeline import load_image

KINDS = ("blank", "solid", "noise", "text", "gradient", "pattern", "clouds")
WORDS = ("invoice", "total", "the quick brown fox", "lorem ipsum", "2026-12-06", "page 3 of 7", "melanoma",
         "hello world", "ERROR 404", "receipt no. 118", "skin", "dermatology clinic")
SIDE = 256  # the side of the pictures before they are saved (the 1-pixel blank excepted)


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, 3).astype(float)


def _blend(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    return a * (1 - t[..., None]) + b * t[..., None]


def _blank(rng: np.random.Generator) -> np.ndarray:
    return _colour(rng)[None, None, :]


def _solid(rng: np.random.Generator) -> np.ndarray:
    size = int(rng.integers(16, SIDE + 1))
    return np.broadcast_to(_colour(rng), (size, size, 3))


def _noise(rng: np.random.Generator) -> np.ndarray:
    kind = rng.integers(3)
    if kind == 0:
        return rng.uniform(0, 256, (SIDE, SIDE, 3 if rng.random() < 0.7 else 1)) * np.ones(3)
    if kind == 1:
        return _colour(rng) + rng.normal(0, rng.uniform(10, 60), (SIDE, SIDE, 3))
    pepper = rng.random((SIDE, SIDE)) < rng.uniform(0.05, 0.5)
    return _blend(_colour(rng), _colour(rng), pepper.astype(float))


def _text(rng: np.random.Generator) -> np.ndarray:
    background, ink = _colour(rng), _colour(rng)
    if rng.random() < 0.6:  # most documents: dark ink on a light page
        background, ink = rng.uniform(200, 256, 3), rng.uniform(0, 80, 3)
    image = Image.new("RGB", (SIDE, SIDE), tuple(int(c) for c in background))
    draw = ImageDraw.Draw(image)
    size = int(rng.integers(10, 40))
    y = int(rng.integers(0, 20))
    while y < SIDE:
        line = " ".join(rng.choice(WORDS, int(rng.integers(1, 4))))
        draw.text((int(rng.integers(0, 30)), y), line, fill=tuple(int(c) for c in ink), font_size=size)
        y += int(size * rng.uniform(1.2, 2.0))
    return np.asarray(image, float)


def _gradient(rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:SIDE, 0:SIDE] / SIDE
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * np.pi)
        t = xx * np.cos(angle) + yy * np.sin(angle)
    else:
        cy, cx = rng.uniform(0.2, 0.8, 2)
        t = np.hypot(yy - cy, xx - cx)
    t = (t - t.min()) / max(t.max() - t.min(), 1e-9)
    return _blend(_colour(rng), _colour(rng), t)


def _pattern(rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(float)
    period = rng.uniform(4, 64)
    kind = rng.integers(4)
    if kind == 0:  # stripes, any angle, hard or soft edges
        angle = rng.uniform(0, np.pi)
        wave = np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
        t = (wave > 0).astype(float) if rng.random() < 0.5 else (wave + 1) / 2
    elif kind == 1:  # checkerboard
        t = ((xx // period + yy // period) % 2).astype(float)
    elif kind == 2:  # concentric rings (wood-like)
        cy, cx = rng.uniform(0, SIDE, 2)
        t = (np.sin(2 * np.pi * np.hypot(yy - cy, xx - cx) / period) + 1) / 2
    else:  # a grid of lines
        t = (((xx % period) < 2) | ((yy % period) < 2)).astype(float)
    return _blend(_colour(rng), _colour(rng), t)


def _clouds(rng: np.random.Generator) -> np.ndarray:
    coarse = int(rng.integers(3, 24))
    field = Image.fromarray((rng.random((coarse, coarse)) * 255).astype(np.uint8)).resize(
        (SIDE, SIDE), Image.Resampling.BICUBIC)
    field = field.filter(ImageFilter.GaussianBlur(rng.uniform(0, 4)))
    t = np.asarray(field, float) / 255
    detail = rng.normal(0, rng.uniform(0, 0.08), t.shape)
    return _blend(_colour(rng), _colour(rng), np.clip(t + detail, 0, 1))


DRAW: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "blank": _blank, "solid": _solid, "noise": _noise, "text": _text, "gradient": _gradient,
    "pattern": _pattern, "clouds": _clouds}


def non_lesion_file(kind: str, rng: np.random.Generator, gif: bool = False) -> bytes:
    """The bytes of one image file of ``kind`` (a palette GIF when ``gif``, else PNG or JPEG)."""
    picture = Image.fromarray(np.clip(DRAW[kind](rng), 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    if gif:
        picture.quantize(256, method=Image.Quantize.FASTOCTREE).save(buffer, format="GIF")  # a palette GIF
    elif rng.random() < 0.5:
        picture.save(buffer, format="PNG")
    else:
        picture.save(buffer, format="JPEG", quality=int(rng.integers(50, 96)))
    return buffer.getvalue()


def non_lesions(count: int, size: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """``count`` decoded (size, size, 3) uint8 non-lesion images, the kinds in turn, and the kind of each."""
    rng = np.random.default_rng(seed)
    kinds = [KINDS[i % len(KINDS)] for i in range(count)]
    images = [load_image(io.BytesIO(non_lesion_file(kind, rng, gif=i % 2 == 1)), size) for i, kind in
              enumerate(kinds)]
    return np.stack(images), kinds
