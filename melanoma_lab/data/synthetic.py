"""A deterministic, dermoscopy-like 9-class dataset in the ISIC folder layout.

Each image is a lesion on a skin-toned background. Classes differ, with overlapping random spread,
in colour, border irregularity, asymmetry and texture; hair strands and sensor noise are added to all.
Class counts follow the ISIC Train folder's proportions. Nothing here comes from ISIC images.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from tqdm import tqdm

from melanoma_lab.data.staging import staged_folder

# Images per class in the real ISIC 9-class Train folder, used as class proportions.
ISIC_TRAIN_COUNTS = {
    "actinic keratosis": 114,
    "basal cell carcinoma": 378,
    "dermatofibroma": 95,
    "melanoma": 438,
    "nevus": 357,
    "pigmented benign keratosis": 462,
    "seborrheic keratosis": 77,
    "squamous cell carcinoma": 181,
    "vascular lesion": 139,
}

ISIC_CLASSES = list(ISIC_TRAIN_COUNTS)  # the ISIC 9-class set's class names (its folder names), sorted


@dataclass(frozen=True)
class LesionStyle:
    colour: tuple[int, int, int]
    irregularity: float  # amplitude of the border's radial harmonics
    asymmetry: float  # elongation and off-centre colour
    texture: str  # dots | network | blotches | stripes | speckles | vessels | ring | lacunae


STYLES = {
    "actinic keratosis": LesionStyle((176, 104, 96), 0.10, 0.20, "speckles"),
    "basal cell carcinoma": LesionStyle((190, 140, 135), 0.12, 0.30, "vessels"),
    "dermatofibroma": LesionStyle((150, 102, 82), 0.05, 0.10, "ring"),
    "melanoma": LesionStyle((78, 50, 42), 0.2, 0.55, "blotches"),
    "nevus": LesionStyle((112, 74, 52), 0.05, 0.10, "network"),
    "pigmented benign keratosis": LesionStyle((102, 74, 56), 0.14, 0.30, "dots"),
    "seborrheic keratosis": LesionStyle((128, 102, 74), 0.12, 0.25, "stripes"),
    "squamous cell carcinoma": LesionStyle((168, 112, 102), 0.16, 0.40, "speckles"),
    "vascular lesion": LesionStyle((160, 42, 64), 0.08, 0.15, "lacunae"),
}


def class_counts(class_names: list[str], total: int) -> dict[str, int]:
    """Split ``total`` images over the classes in ISIC proportions, at least 2 per class."""
    weights = np.array([ISIC_TRAIN_COUNTS.get(name, 1.0) for name in class_names], dtype=float)
    counts = np.maximum(2, np.round(total * weights / weights.sum())).astype(int)
    return dict(zip(class_names, counts.tolist()))


def _texture(kind: str, yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A [-1, 1] modulation map of the lesion's interior."""
    size = yy.shape[0]
    freq = rng.uniform(0.6, 1.4)
    if kind == "network":
        return 0.5 * (np.sin(xx * 0.9 * freq) * np.sin(yy * 0.9 * freq))
    if kind == "stripes":
        angle = rng.uniform(0, np.pi)
        return np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 0.7 * freq)
    if kind == "ring":
        rr = np.hypot(xx - size / 2, yy - size / 2)
        return np.where(rr < size * rng.uniform(0.06, 0.12), 1.0, -0.2)
    spots = np.zeros_like(xx, dtype=float)
    count, radius, sign = {"dots": (18, 1.8, -1.0), "speckles": (40, 1.0, 1.0), "lacunae": (12, 2.8, -1.0),
                           "blotches": (5, 7.0, -1.0), "vessels": (0, 0, 0)}[kind]
    scale = size / 96
    for _ in range(count):
        cy, cx = rng.uniform(0.25, 0.75, 2) * size
        spots += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (radius * scale) ** 2))
    if kind == "vessels":
        for _ in range(4):
            phase, amp, pos = rng.uniform(0, 2 * np.pi), rng.uniform(2, 6) * scale, rng.uniform(0.3, 0.7) * size
            spots += np.exp(-((yy - pos - amp * np.sin(xx / (6 * scale) + phase)) ** 2) / (2 * scale**2))
    return sign * np.clip(spots, 0, 1)


def render_lesion(style: LesionStyle, size: int, rng: np.random.Generator) -> np.ndarray:
    """Render one RGB uint8 image of a lesion of ``style``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    skin = np.array([rng.uniform(200, 235), rng.uniform(150, 185), rng.uniform(120, 160)])
    gradient = (xx / size - 0.5) * rng.uniform(-30, 30)
    image = skin[None, None, :] + gradient[..., None]

    cy, cx = size / 2 + rng.normal(0, size * 0.05, 2)
    elongation = 1 + style.asymmetry * rng.uniform(0.2, 0.9)
    angle = rng.uniform(0, np.pi)
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = (-dx * np.sin(angle) + dy * np.cos(angle)) * elongation
    theta = np.arctan2(v, u)
    radius = size * rng.uniform(0.22, 0.34)
    harmonics = sum(rng.normal(0, style.irregularity / k**0.5) * np.sin(k * theta + rng.uniform(0, 2 * np.pi))
                    for k in range(3, 9))
    boundary = radius * (1 + harmonics)
    alpha = 1 / (1 + np.exp((np.hypot(u, v) - boundary) / (size * 0.015)))

    colour = np.array(style.colour, float) * rng.uniform(0.75, 1.25) + rng.normal(0, 12, 3)
    shade = style.asymmetry * ((u / radius) * rng.uniform(0.3, 1.0)) * 40  # one side darker: asymmetry
    texture = _texture(style.texture, yy, xx, rng) * rng.uniform(25, 45)
    lesion = colour[None, None, :] - shade[..., None] + texture[..., None]
    image = image * (1 - alpha[..., None]) + lesion * alpha[..., None]

    pil = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    for _ in range(rng.poisson(3)):  # hair strands
        x0, y0 = rng.uniform(0, size, 2)
        x1, y1 = x0 + rng.normal(0, size * 0.5), y0 + rng.normal(0, size * 0.5)
        draw.line([(x0, y0), (x1, y1)], fill=tuple(int(c) for c in rng.uniform(20, 60, 3)),
                  width=max(1, size // 96))
    noisy = np.asarray(pil, float) + rng.normal(0, 6, (size, size, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def settings_fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def generate(out_dir: Path, class_names: list[str], train_images: int, test_images: int, size: int,
             seed: int) -> Path:
    """Write ``Train/`` and ``Test/`` under ``out_dir`` (atomically: a half-written set is never seen)."""
    out_dir = Path(out_dir)
    if (out_dir / "Train").is_dir():
        return out_dir
    with staged_folder(out_dir, "Train", "synthetic") as staging:
        jobs = []
        for split_index, (folder, total) in enumerate((("Train", train_images), ("Test", test_images))):
            for class_index, (name, count) in enumerate(class_counts(class_names, total).items()):
                (staging / folder / name).mkdir(parents=True)
                jobs += [(folder, name, class_index, split_index, i) for i in range(count)]
        bar = tqdm(jobs, desc="generating synthetic lesions", unit="img", disable=None)  # None: on a terminal only
        for folder, name, class_index, split_index, i in bar:
            rng = np.random.default_rng([seed, split_index, class_index, i])
            style = STYLES.get(name, LesionStyle(tuple(rng.integers(60, 200, 3)), 0.1, 0.2, "dots"))
            Image.fromarray(render_lesion(style, size, rng)).save(
                staging / folder / name / f"SYN_{split_index}{class_index}{i:05d}.jpg", quality=92)
    return out_dir


def ensure_dataset(cache_dir: str | Path, class_names: list[str], train_images: int, test_images: int,
                   size: int, seed: int) -> Path:
    """Return the cached synthetic dataset for these settings, generating it on first use."""
    settings = {"classes": class_names, "train": train_images, "test": test_images, "size": size, "seed": seed,
                "version": 1}
    target = Path(cache_dir).resolve() / "synthetic" / settings_fingerprint(settings)
    return generate(target, class_names, train_images, test_images, size, seed)
