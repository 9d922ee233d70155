"""Decode images once into uint8 arrays (in RAM or a memory-mapped file) and read batches of rows from them; the
batches reach Keras through :mod:`melanoma_lab.data.batches`."""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import numpy as np
import pandas as pd
from PIL import Image

from melanoma_lab.data.staging import staged_folder


@dataclass
class DecodedImages:
    images: np.ndarray  # (n, size, size, 3) uint8
    labels: np.ndarray  # (n,) int32 class indices
    files: pd.DataFrame  # the rows that decoded, in order
    failures: dict[str, str]  # path -> reason, for files that did not decode


def load_image(source: str | BinaryIO, size: int) -> np.ndarray:
    """Read any image file (a path or an open binary file) as RGB uint8 of shape (size, size, 3)."""
    with Image.open(source) as image:
        image = image.convert("RGB")
        if image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8)


def _try_load(path: str, size: int) -> np.ndarray | str:
    try:
        return load_image(path, size)
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        return f"{type(error).__name__}: {error}"


DECODE_CHUNK = 512  # files decoded per step: bounds the memory of decoding to disk


def _decode_chunks(paths: list[str], size: int) -> Iterator[tuple[str, np.ndarray | str]]:
    """(path, image or failure reason) in order, ``DECODE_CHUNK`` files at a time on every core."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for start in range(0, len(paths), DECODE_CHUNK):
            chunk = paths[start:start + DECODE_CHUNK]
            yield from zip(chunk, pool.map(lambda p: _try_load(p, size), chunk))


def _decode_into(rows: np.ndarray, paths: list[str], size: int) -> tuple[dict[str, str], int]:
    """Decode ``paths`` into the first rows of ``rows`` (RAM or a memory map), skipping files that fail;
    returns the failures (path -> reason) and the number of rows written."""
    failures, count = {}, 0
    for path, result in _decode_chunks(paths, size):
        if isinstance(result, str):
            failures[path] = result
        else:
            rows[count], count = result, count + 1
    return failures, count


def _decoded(files: pd.DataFrame, classes: list[str], images: np.ndarray, failures: dict[str, str]) -> DecodedImages:
    kept = files[~files["path"].isin(list(failures))].reset_index(drop=True)
    index = {name: i for i, name in enumerate(classes)}
    labels = np.array([index[label] for label in kept["label"]], dtype=np.int32)
    return DecodedImages(images=images, labels=labels, files=kept, failures=failures)


RECENT_SPLITS = 3  # decoded splits kept per process: the next run of a study reuses its train/val/test arrays
_recent: OrderedDict[str, tuple[np.ndarray, dict[str, str]]] = OrderedDict()


def decode(files: pd.DataFrame, classes: list[str], size: int) -> DecodedImages:
    """Decode every file in ``files`` into RAM; files that fail are returned in ``failures``, not raised.
    The last ``RECENT_SPLITS`` splits decoded in this process are reused (read-only) for the same files."""
    paths = list(files["path"])
    key = _decode_key(paths, size)
    if key not in _recent:
        images = np.empty((len(paths), size, size, 3), np.uint8)
        failures, count = _decode_into(images, paths, size)
        images = images[:count] if failures else images  # a view: the rows of unreadable files stay unused
        images.flags.writeable = False
        _recent[key] = images, failures
        while len(_recent) > RECENT_SPLITS:
            _recent.popitem(last=False)
    _recent.move_to_end(key)
    return _decoded(files, classes, *_recent[key])


def _decode_key(paths: list[str], size: int) -> str:
    """Content key of a decoded split: the files (path, size, modification time) and the image size."""
    def stat(path: str) -> tuple[int, int]:
        try:
            info = os.stat(path)
            return info.st_size, info.st_mtime_ns
        except OSError:
            return -1, -1
    return hashlib.sha256(json.dumps([size, [(p, *stat(p)) for p in paths]]).encode()).hexdigest()[:16]


def decode_to_disk(files: pd.DataFrame, classes: list[str], size: int, cache_dir: str | Path) -> DecodedImages:
    """Like :func:`decode`, for splits larger than RAM: the images go to a uint8 file under ``cache_dir``
    (content-addressed, reused by later runs, written atomically) and come back as a read-only memory map
    that :func:`melanoma_lab.data.batches.make_dataset` reads batch by batch."""
    paths = list(files["path"])
    target = Path(cache_dir).resolve() / _decode_key(paths, size)
    if not (target / "decoded.json").is_file():
        with staged_folder(target, "decoded.json", "decoding") as staging:
            rows = np.memmap(staging / "images.u8", np.uint8, "w+", shape=(max(len(paths), 1), size, size, 3))
            failures, count = _decode_into(rows, paths, size)
            rows.flush()
            del rows
            (staging / "decoded.json").write_text(json.dumps({"count": count, "failures": failures}))
    meta = json.loads((target / "decoded.json").read_text())
    images = (np.memmap(target / "images.u8", np.uint8, "r", shape=(meta["count"], size, size, 3))
              if meta["count"] else np.zeros((0, size, size, 3), np.uint8))
    return _decoded(files, classes, images, meta["failures"])


def row_reader(images: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Rows ``indices`` of ``images`` as one batch. An array in RAM is indexed in place; a decoded-images file is
    read with ``pread``, so only the batch in flight is in memory."""
    if not isinstance(images, np.memmap):
        return lambda indices: images[indices]
    shape, row_bytes = images.shape[1:], int(np.prod(images.shape[1:]))
    handle = os.open(images.filename, os.O_RDONLY)

    def read(indices: np.ndarray) -> np.ndarray:
        batch = np.empty((len(indices), *shape), np.uint8)
        for i, index in enumerate(indices):
            batch[i] = np.frombuffer(os.pread(handle, row_bytes, int(index) * row_bytes), np.uint8).reshape(shape)
        return batch
    return read


def augment_batch(augment, images, labels) -> tuple:
    """One training batch through ``augment`` (:mod:`melanoma_lab.components.augmentation`) as Keras' image preprocessing
    layers take a batch with its labels (``{"images", "labels"}``): MixUp and CutMix blend the one-hot labels as
    they blend the images; the other layers pass the labels through."""
    out = augment({"images": images, "labels": labels}, training=True)
    return out["images"], out["labels"]


@dataclass
class PreparedData:
    classes: list[str]
    train: DecodedImages
    validation: DecodedImages
    test: DecodedImages | None
    counts_before: dict[str, int]
    counts_after: dict[str, int]
    skipped: dict[str, str]
    test_unscored: pd.DataFrame  # Test images (or Test folder entries) not scored: path, reason
    class_weight: dict[int, float] | None = None  # loss weights of the imbalance strategy, if it gives any
    held_out: DecodedImages | None = None  # nested cross-validation: the outer fold, scored only (``fold_*``)
