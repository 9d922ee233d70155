"""Class rebalancing of the TRAINING split, chosen by the ``imbalance`` group's ``_target_``: a strategy is a function
that takes the training rows (``train``: a catalog table of path, label, ...) and, by parameter name, ``seed`` and
``cache_dir``, and returns :class:`Rebalanced`: the rows to train on and optionally loss class weights.

Generated images derive only from the training rows passed in (the split happens before), and each
generated row records its ``parent``, so tests can prove that nothing reaches training from validation.
Generation is cached by content: the same training files, operations, counts and seed reuse one folder.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import random
from dataclasses import dataclass
from functools import partial
from typing import Callable, Optional
from concurrent.futures import ProcessPoolExecutor
from importlib.metadata import version
from pathlib import Path

import Augmentor
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from sklearn.utils.class_weight import compute_class_weight
from tqdm import tqdm

from melanoma_lab.config.schema import ConfigError
from melanoma_lab.data.catalog import file_sha256
from melanoma_lab.data.columns import COLUMNS
from melanoma_lab.data.staging import staged_folder
from melanoma_lab.config.plugins import Annotated, Range

MANIFEST = "manifest.csv"


@dataclass
class Rebalanced:
    """What a strategy returns: the training rows (originals, plus generated rows whose ``parent`` is a training
    row) and optionally ``class_weight(labels, num_classes) -> {class index: weight}`` for the loss."""

    train: pd.DataFrame
    class_weight: Callable[[np.ndarray, int], dict[int, float]] | None = None


def unchanged(train: pd.DataFrame) -> Rebalanced:
    """No rebalancing."""
    return Rebalanced(train)


def augmentor(train: pd.DataFrame, seed: int, cache_dir: str, extra_per_class: Annotated[int, Range(0)] = 0,
              target_per_class: Optional[Annotated[int, Range(1)]] = None, workers: Annotated[int, Range(1)] = 2,
              operations: list[dict] = ()) -> Rebalanced:
    """Augmentor-generated images per class: ``extra_per_class`` each, or up to ``target_per_class``; ``operations``
    are Augmentor Pipeline methods ``{name, probability, params}`` applied in order, by ``workers`` processes."""
    settings = OmegaConf.create({"extra_per_class": extra_per_class, "target_per_class": target_per_class,
                                 "workers": workers, "operations": list(operations)})
    generated = generate_augmentor_images(train, settings, cache_dir, seed)
    return Rebalanced(pd.concat([train, generated], ignore_index=True))


def class_weight(train: pd.DataFrame, max_class_weight: Optional[Annotated[float, Range(1.0)]] = None) -> Rebalanced:
    """Weight the loss by inverse class frequency of the training split, capped at ``max_class_weight``."""
    return Rebalanced(train, partial(balanced_class_weights, max_weight=max_class_weight))


def extra_counts(counts: dict[str, int], extra_per_class: int, target_per_class: int | None) -> dict[str, int]:
    """Images to generate per class: ``extra_per_class`` each, or enough to reach ``target_per_class``."""
    if target_per_class is None:
        return {name: extra_per_class if n > 0 else 0 for name, n in counts.items()}
    too_big = {name: n for name, n in counts.items() if n > target_per_class}
    if too_big:
        raise ConfigError(f"imbalance.target_per_class={target_per_class} is below existing training class "
                          f"sizes {too_big}: raise it, or use imbalance.extra_per_class instead")
    return {name: target_per_class - n if n > 0 else 0 for name, n in counts.items()}


def build_pipeline(operations: list[dict]) -> Augmentor.Pipeline:
    """An Augmentor pipeline from ``[{name, probability, params}]``; unknown operations are a ConfigError."""
    pipeline = Augmentor.Pipeline()
    for operation in operations:
        method = getattr(Augmentor.Pipeline, operation["name"], None)
        if method is None or operation["name"].startswith("_") or operation["name"] in ("sample", "process"):
            raise ConfigError(f"imbalance.operations: {operation['name']!r} is not an Augmentor Pipeline "
                              "operation (e.g. rotate, flip_left_right, zoom_random, random_distortion)")
        try:
            method(pipeline, probability=operation["probability"], **operation.get("params", {}))
        except TypeError as error:
            raise ConfigError(f"imbalance.operations.{operation['name']}: {error}") from error
    return pipeline


def _generate_chunk(operations: list[dict], jobs: list[tuple[str, str, str]]) -> list[str]:
    """Worker: write one augmented image per job (parent path, output path, seed text)."""
    # Pipeline.torch_transform() is Augmentor's public "PIL image in, PIL image out" call (torch not needed)
    transform = build_pipeline(operations).torch_transform()
    for parent, output, seed_text in jobs:
        random.seed(seed_text)
        np.random.seed(int(hashlib.sha256(seed_text.encode()).hexdigest()[:8], 16))
        with Image.open(parent) as image:
            transform(image.convert("RGB")).convert("RGB").save(output, quality=95)
    return [output for _, output, _ in jobs]


def cache_key(train: pd.DataFrame, operations: list[dict], counts: dict[str, int], seed: int) -> str:
    content = {"files": sorted(zip(train["label"], train["sha256"])), "operations": operations,
               "counts": counts, "seed": seed, "augmentor": version("Augmentor")}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def generate_augmentor_images(train: pd.DataFrame, cfg: DictConfig, cache_dir: str | Path,
                              seed: int) -> pd.DataFrame:
    """Rows of generated training images (``source=augmentor``), created once per content key."""
    operations = OmegaConf.to_container(cfg.operations, resolve=True)
    build_pipeline(operations)  # fail on a bad operation before any work
    counts = extra_counts(train["label"].value_counts().to_dict(), cfg.extra_per_class, cfg.target_per_class)
    target = Path(cache_dir).resolve() / "augmentor" / cache_key(train, operations, counts, seed)
    if (target / MANIFEST).is_file():
        return pd.read_csv(target / MANIFEST, keep_default_na=False)[COLUMNS]

    rng = np.random.default_rng(seed)
    with staged_folder(target, MANIFEST, "augmentor") as staging:
        jobs, rows = [], []
        for label, count in sorted(counts.items()):
            parents = sorted(train.loc[train["label"] == label, "path"])
            (staging / label).mkdir()
            for i, parent in enumerate(rng.choice(parents, size=count, replace=True) if count else []):
                name = f"{Path(parent).stem}_aug{i:05d}.jpg"
                jobs.append((parent, str(staging / label / name), f"{seed}|{label}|{i}"))
                rows.append({"path": str(target / label / name), "label": label, "split": "train",
                             "source": "augmentor", "parent": parent})
        chunks = [jobs[i::cfg.workers] for i in range(cfg.workers) if jobs[i::cfg.workers]]
        context = multiprocessing.get_context("spawn")  # never fork a process that runs TensorFlow
        with ProcessPoolExecutor(max_workers=len(chunks) or 1, mp_context=context) as pool:
            futures = [pool.submit(_generate_chunk, operations, chunk) for chunk in chunks]
            bar = tqdm(futures, desc=f"Augmentor: {len(jobs)} images, {len(chunks)} workers",
                       disable=None)  # None: a progress bar on a terminal only
            for future in bar:
                future.result()
        generated = pd.DataFrame(rows)
        generated["sha256"] = [file_sha256(staging / Path(p).relative_to(target)) for p in generated["path"]]
        generated = generated.reindex(columns=COLUMNS)
        generated.to_csv(staging / MANIFEST, index=False)
    return pd.read_csv(target / MANIFEST, keep_default_na=False)[COLUMNS]


def balanced_class_weights(labels: np.ndarray, num_classes: int,
                           max_weight: float | None = None) -> dict[int, float]:
    """Inverse-frequency weights (scikit-learn's "balanced") for the classes present in ``labels``.

    ``max_weight`` caps them: a class left with a handful of images (e.g. after dropping label conflicts)
    would otherwise get a weight of ~100 and drag every prediction towards itself.
    """
    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=labels)
    if max_weight is not None:
        weights = np.minimum(weights, max_weight)
    return {int(c): float(w) for c, w in zip(present, weights)} | {
        c: 1.0 for c in range(num_classes) if c not in set(present.tolist())}
