"""Benchmark column: the same model on the same data under each Keras backend (tensorflow, jax, torch).

The training images are decoded once into uint8 arrays (``images.npy``/``labels.npy`` for training and
validation); each backend then trains the M1 CNN on them with a plain ``model.fit`` on numpy arrays (float32,
no tf.data, no melanoma_lab trainer) in its own process under ``KERAS_BACKEND=<backend>``, so that images/s and
peak RSS compare the backends and nothing else. A backend whose package is not installed is reported as
"not installed"; one whose process fails as "failed" with the end of its error output.

    python -m melanoma_lab.bench.backends --backend jax --arrays DIR --epochs 4 --result FILE   (one child)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from melanoma_lab.bench.measure import BATCH, SEED, SIZE, FitTimer, data_overrides
from melanoma_lab.config.compose import compose
from melanoma_lab.data.staging import write_atomically

BACKENDS = ("tensorflow", "jax", "torch")  # Keras' backend names, which are also their packages' import names
SPLITS = ("train", "val")
KEYS = ("images_per_s", "time_to_first_batch_s", "wall_s", "peak_rss_mb", "final_val_accuracy")


def installed(backend: str) -> bool:
    return importlib.util.find_spec(backend) is not None


def backend_version(backend: str) -> str:
    for package in ((backend, "tensorflow-cpu") if backend == "tensorflow" else (backend,)):
        try:
            return version(package)
        except PackageNotFoundError:
            continue
    return "unknown"


def save_arrays(folder: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{split}-images.npy", np.asarray(images, np.uint8))
    np.save(folder / f"{split}-labels.npy", np.asarray(labels, np.int64))


def load_arrays(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    return np.load(folder / f"{split}-images.npy"), np.load(folder / f"{split}-labels.npy")


def write_arrays(data: str | None, workdir: Path) -> Path:
    """The benchmark's training and validation split (same files as the other variants) as uint8 arrays."""
    from melanoma_lab.data.pipeline import decode
    from melanoma_lab.data.split import train_val_split
    from melanoma_lab.data.sources import load_catalog

    cfg = compose(["experiment=m1"] + data_overrides(data, workdir))
    catalog = load_catalog(cfg.dataset)
    files = catalog.files[catalog.files["split"] == "train"].reset_index(drop=True)
    folder = workdir / "backend-arrays"
    for split, part in zip(SPLITS, train_val_split(files, cfg.dataset.val_fraction, SEED)):
        decoded = decode(part, catalog.classes, SIZE)
        save_arrays(folder, split, decoded.images, decoded.labels)
    return folder


def train_plain(arrays: Path, epochs: int) -> dict[str, Any]:
    """One timed ``fit`` of the M1 CNN on ``arrays`` under this process's Keras backend (float32)."""
    started = time.perf_counter()
    import keras
    from melanoma_lab.config.plugins import build

    (x, y), validation = (load_arrays(arrays, split) for split in SPLITS)
    num_classes = int(max(y.max(), validation[1].max())) + 1
    cfg = compose(["experiment=m1"])
    keras.utils.set_random_seed(SEED)
    model = build(cfg.model, "model", input_shape=x.shape[1:], num_classes=num_classes)
    model.compile(optimizer=keras.optimizers.Adam(cfg.optimizer.learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    timer = FitTimer(started)
    model.fit(x, y, batch_size=BATCH, epochs=epochs, validation_data=validation, callbacks=[timer.callback],
              verbose=0)
    return timer.summary(time.perf_counter() - started) | {"keras_backend": keras.backend.backend()}


def run_backend(backend: str, arrays: Path, epochs: int, result: Path) -> dict[str, Any]:
    """``backend``'s training in a child process: its summary, or ``{"status": "failed", "error": ...}``."""
    command = [sys.executable, "-m", "melanoma_lab.bench.backends", "--backend", backend, "--arrays", str(arrays),
               "--epochs", str(epochs), "--result", str(result)]
    env = os.environ | {"KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return {"status": "failed", "error": done.stderr.strip()[-2000:]}
    return {"status": "ok"} | json.loads(result.read_text())


def compare_backends(arrays: Path, epochs: int, repeats: int, backends=BACKENDS) -> dict[str, dict[str, Any]]:
    """Each installed backend trained ``repeats`` times (interleaved); medians per backend."""
    runs: dict[str, list[dict[str, Any]]] = {b: [] for b in backends if installed(b)}
    for repeat in range(repeats):
        for backend in runs:
            runs[backend].append(run_backend(backend, arrays, epochs, arrays / f"{backend}-{repeat}.json"))
            print(f"  backend {backend:<10} repeat {repeat + 1}: {runs[backend][-1]['status']}", flush=True)
    summary = {b: {"status": "not installed"} for b in backends if b not in runs}
    for backend, results in runs.items():
        failed = [r for r in results if r["status"] != "ok"]
        summary[backend] = failed[0] if failed else {
            "status": "ok", "version": backend_version(backend), "keras_backend": results[0]["keras_backend"],
            "repeats": len(results),
            **{k: statistics.median(r[k] for r in results) for k in KEYS}}
    return {b: summary[b] for b in backends}


def format_rows(backends: dict[str, dict[str, Any]]) -> list[str]:
    """Table rows of :func:`compare_backends` (none when the benchmark ran without it)."""
    if not backends:
        return []
    rows = [f"{'backend':<10} {'images/s':>9} {'peak RSS MB':>12} {'wall s':>8} {'val acc':>8}  version "
            "(plain fit on uint8 arrays, float32)"]
    for name, b in backends.items():
        if b["status"] == "ok":
            rows.append(f"{name:<10} {b['images_per_s']:>9.0f} {b['peak_rss_mb']:>12.0f} {b['wall_s']:>8.1f} "
                        f"{b['final_val_accuracy']:>8.3f}  {b['version']}")
        else:
            rows.append(f"{name:<10} {b['status']}" + (f": {b['error'].splitlines()[-1]}" if "error" in b else ""))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=BACKENDS, required=True)
    parser.add_argument("--arrays", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args(argv)
    if os.environ.get("KERAS_BACKEND") != args.backend:
        parser.error(f"run with KERAS_BACKEND={args.backend} (Keras reads it when it is first imported)")
    write_atomically(args.result, json.dumps(train_plain(args.arrays, args.epochs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
