"""The shift check: a model's headline metrics under controlled acquisition shifts, and how far each one drops.

Out-of-fold numbers on one copy of a dataset reward whatever shortcut that copy offers (a colour cast of one
clinic's melanomas, say); a recipe that wins there by leaning on it loses on other cameras. The shift check scores
the same images again after a change a different camera, light or compression would make, with the model's own
alert threshold unchanged, and reports each headline metric's drop from the unshifted images.

The shifts are the ``evaluation.shifts`` config: families (colour, intensity, quality) of named shifts, each a
function here by ``_target_`` with its parameters. "Moderate" (the default) means per-channel gains in [0.8, 1.2],
brightness and contrast +-20%, Gaussian blur of sigma 1 px and JPEG quality 50. A shift works on the decoded uint8
image, before any colour constancy of the model (which is part of the model's own prediction path).
"""

from __future__ import annotations

import io
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from PIL import Image

from melanoma_lab.config.plugins import build
from melanoma_lab.evaluation import registry

Shift = Callable[[np.ndarray], np.ndarray]  # (n, h, w, 3) uint8 -> (n, h, w, 3) uint8
UNSHIFTED = "none"


def _to_uint8(images: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


def channel_gains(images: np.ndarray, gains: Sequence[float]) -> np.ndarray:
    """An illuminant or white-balance cast: each of R, G, B multiplied by its gain."""
    return _to_uint8(images.astype(np.float32) * np.asarray(gains, np.float32))


def brightness(images: np.ndarray, factor: float) -> np.ndarray:
    """Exposure: every value multiplied by ``factor`` (1.2: 20% brighter)."""
    return _to_uint8(images.astype(np.float32) * factor)


def contrast(images: np.ndarray, factor: float) -> np.ndarray:
    """Contrast about each image's mean (per channel), multiplied by ``factor``."""
    x = images.astype(np.float32)
    mean = x.mean(axis=(1, 2), keepdims=True)
    return _to_uint8(mean + (x - mean) * factor)


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Defocus: a Gaussian blur of ``sigma`` pixels in both image axes (edges reflected)."""
    from scipy.ndimage import gaussian_filter

    return _to_uint8(gaussian_filter(images.astype(np.float32), sigma=(0, sigma, sigma, 0), mode="reflect"))


def jpeg_quality(images: np.ndarray, quality: int) -> np.ndarray:
    """Compression: each image saved as JPEG at ``quality`` (Pillow, 4:2:0) and decoded again."""
    out = np.empty_like(images, dtype=np.uint8)
    for index, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format="JPEG", quality=int(quality))
        out[index] = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return out


def build_shifts(shifts: DictConfig | dict | None) -> dict[tuple[str, str], Shift]:
    """``{(family, name): shift}`` of the ``evaluation.shifts`` config (family -> name -> ``_target_`` and its
    parameters); a family or shift set to null is left out."""
    built = {}
    for family, members in (shifts or {}).items():
        for name, node in (members or {}).items():
            if node is not None:
                built[(str(family), str(name))] = build(node, f"evaluation.shifts.{family}.{name}", partial=True)
    return built


def shift_table(predict: Callable[[Shift | None], np.ndarray], score: Callable[[np.ndarray], dict[str, float]],
                shifts: dict[tuple[str, str], Shift]) -> pd.DataFrame:
    """One row per shift (the unshifted images first): ``score`` of ``predict(shift)`` (the probabilities of every
    image after ``shift``; None: as they are), and ``drop_<metric>`` = unshifted minus shifted (positive: worse)."""
    rows = [{"family": UNSHIFTED, "shift": UNSHIFTED, **score(predict(None))}]
    for (family, name), shift in shifts.items():
        rows.append({"family": family, "shift": name, **score(predict(shift))})
    table = pd.DataFrame(rows)
    for metric in [m for m in registry.names(registry.SHIFT) if m in table]:
        table[f"drop_{metric}"] = table[metric].iloc[0] - table[metric]
    return table


def shift_metrics(table: pd.DataFrame, prefix: str) -> dict[str, float]:
    """MLflow metrics of a :func:`shift_table`: ``<prefix>shift_<name>_<metric>`` and, per family, the worst
    (largest) drop of each gated metric, ``<prefix>shift_worst_drop_<family>_<metric>`` (the registry's
    :data:`~melanoma_lab.evaluation.registry.SHIFT` and ``SHIFT_GATE`` metrics)."""
    metrics = {}
    shown, gated = registry.names(registry.SHIFT), registry.names(registry.SHIFT_GATE)
    shifted = table[table["shift"] != UNSHIFTED]
    for _, row in shifted.iterrows():
        metrics |= {f"{prefix}shift_{row['shift']}_{m}": float(row[m]) for m in shown if m in row and
                    pd.notna(row[m])}
    for family, rows in shifted.groupby("family"):
        metrics |= {f"{prefix}shift_worst_drop_{family}_{m}": float(rows[f"drop_{m}"].max()) for m in gated
                    if f"drop_{m}" in rows and rows[f"drop_{m}"].notna().any()}
    return metrics


def render(table: pd.DataFrame) -> str:
    """The shift table in Markdown: each headline metric and its drop."""
    metrics = [m for m in registry.names(registry.SHIFT) if m in table]
    lines = ["| family | shift | " + " | ".join(f"{m} | drop" for m in metrics) + " |",
             "|---|---|" + "---|---|" * len(metrics)]
    for _, row in table.iterrows():
        cells = [f"{row[m]:.3f} | {row[f'drop_{m}']:+.3f}" if pd.notna(row[m]) else "n/a | " for m in metrics]
        lines.append(f"| {row['family']} | {row['shift']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
