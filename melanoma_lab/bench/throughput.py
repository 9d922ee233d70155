"""Benchmark: the seeds' input pipeline vs melanoma_lab's, tracking overhead, Augmentor cache, scaling.

    melanoma-lab bench [--data PATH] [--epochs 4] [--tracked-epochs 12] [--repeats 3] [--out bench/results.json]
                                            [--backends tensorflow,jax,torch]

Same data (default: the real training copy when present, else synthetic 180 px images with ISIC-like class
counts) and the same M1 model for every variant, each in its own process, interleaved over ``--repeats``:
  seed        keras.utils.image_dataset_from_directory + cache + shuffle + prefetch, plain model.fit
  lab         melanoma_lab's run (audit, decode once, tf.data from uint8, its trainer, MLflow tracking on)
  untracked   the same run with tracking off
  float32     the lab run without mixed precision (what trainer.precision=auto buys on this machine)
  disk        the lab run with dataset.ram_budget_mb=64: the training split is read from the disk cache
lab and untracked train ``--tracked-epochs`` (the others ``--epochs``): tracking costs a fixed few seconds per
run plus one store write per epoch, so its share is measured on a run of study length. The tracking overhead is
the time the lab run spent in MLflow calls (``RunTracker.seconds``) over the rest of its run; the lab/untracked
wall-time ratio is reported beside it as a cross-check (noisier: two processes, ±1-2 s).
Then the Augmentor step of M3 cold and warm (cached), a 1x/2x/4x scaling series of one training epoch, and the
backend column: the same M1 fit on the same uint8 arrays under KERAS_BACKEND=tensorflow|jax|torch (bench/backends.py).
Prints a table and writes JSON; the last line is ``speedup_vs_seed=<lab/seed images/s> tracking_overhead=<f>``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from melanoma_lab.bench import backends
from melanoma_lab.bench.measure import BATCH, REAL_DATA, SEED, SIZE, FitTimer, data_overrides
from melanoma_lab.config.compose import compose
from melanoma_lab.data.staging import write_atomically

if TYPE_CHECKING:
    from melanoma_lab.training.fit import TrainingRecipe

VARIANTS = ("seed", "lab", "untracked", "float32", "disk")
TRACKING_PAIR = ("lab", "untracked")  # trained for --tracked-epochs
DISK_BUDGET_MB = 64  # the "disk" variant's dataset.ram_budget_mb: below the decoded training split


def train_seed_pipeline(recipe: TrainingRecipe, train_dir: Path, epochs: int) -> dict[str, list[float]]:
    """The seeds' notebook: image_dataset_from_directory + cache + shuffle + prefetch, the augmentation of
    ``recipe`` as layers in front of its model, plain fit; returns Keras' history."""
    import keras
    import tensorflow as tf
    from melanoma_lab.config.plugins import build

    from melanoma_lab.components.augmentation import build_augmentation

    common = dict(validation_split=recipe.dataset.val_fraction, seed=SEED, image_size=(SIZE, SIZE), batch_size=BATCH)
    train = keras.utils.image_dataset_from_directory(train_dir, subset="training", **common)
    validation = keras.utils.image_dataset_from_directory(train_dir, subset="validation", **common)
    num_classes = len(train.class_names)
    train = train.cache().shuffle(1000, seed=SEED).prefetch(tf.data.AUTOTUNE)
    validation = validation.cache().prefetch(tf.data.AUTOTUNE)
    model = build(recipe.model, "model", input_shape=(SIZE, SIZE, 3), num_classes=num_classes)
    augmentation = build_augmentation(recipe.augmentation, SEED)
    if augmentation is not None:
        model = keras.Sequential([keras.Input((SIZE, SIZE, 3)), augmentation, model])
    model.compile(optimizer=keras.optimizers.Adam(recipe.optimizer.learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    return model.fit(train, validation_data=validation, epochs=epochs, verbose=0).history


def run_variant(variant: str, data: str | None, epochs: int, workdir: Path) -> dict[str, Any]:
    """One timed training of ``variant`` in this process."""
    started = time.perf_counter()
    timer = FitTimer(started)
    timer.install()
    overrides = ["experiment=m1", f"trainer.epochs={epochs}", "trainer.verbose=0", "study.name=bench",
                 "tracking.skip_finished=false", f"tracking.enabled={variant != 'untracked'}"]
    overrides += {"float32": ["trainer.precision=float32"],
                  "disk": [f"dataset.ram_budget_mb={DISK_BUDGET_MB}"]}.get(variant, [])
    cfg = compose(overrides + data_overrides(data, workdir))
    costs: dict[str, float] = {}
    if variant == "seed":
        from melanoma_lab.data.sources import load_catalog
        from melanoma_lab.training.fit import TrainingRecipe

        recipe = TrainingRecipe(*map(cfg.get, TrainingRecipe._fields))
        train_seed_pipeline(recipe, Path(load_catalog(cfg.dataset).root) / "Train", epochs)
    else:
        from melanoma_lab.study.experiment import run_experiment

        metrics = run_experiment(cfg, workdir / "runs" / f"{variant}-{os.getpid()}")
        costs = {k: metrics[k] for k in ("run_seconds", "tracking_seconds")}
    return timer.summary(time.perf_counter() - started) | costs


def time_augmentor(data: str | None, workdir: Path) -> dict[str, float]:
    """M3's Augmentor step (500 extra images per class) on a fresh cache, then again from the cache."""
    from melanoma_lab.data.sources import load_catalog
    from melanoma_lab.data.split import train_val_split
    from melanoma_lab.components.imbalance import generate_augmentor_images

    cfg = compose(["experiment=m3"] + data_overrides(data, workdir))
    catalog = load_catalog(cfg.dataset)
    files = catalog.files[catalog.files["split"] == "train"].reset_index(drop=True)
    train, _ = train_val_split(files, cfg.dataset.val_fraction, SEED)
    cache = Path(tempfile.mkdtemp(dir=workdir, prefix="augmentor-cache-"))
    timings = {}
    for state in ("cold", "warm"):
        begin = time.perf_counter()
        generated = generate_augmentor_images(train, cfg.imbalance, cache, SEED)
        timings[f"augmentor_{state}_s"] = time.perf_counter() - begin
    timings["augmentor_images"] = len(generated)
    timings["augmentor_workers"] = cfg.imbalance.workers
    return timings


def time_scaling(data: str | None, workdir: Path, factors: tuple[int, ...] = (1, 2, 4)) -> list[dict[str, float]]:
    """Seconds of one M1 training epoch (melanoma_lab pipeline) on the training images repeated 1x, 2x, 4x."""
    import keras
    import numpy as np
    from melanoma_lab.config.plugins import build

    from melanoma_lab.data.batches import make_dataset
    from melanoma_lab.data.pipeline import DecodedImages, decode
    from melanoma_lab.data.sources import load_catalog
    from melanoma_lab.runtime import set_precision

    cfg = compose(["experiment=m1"] + data_overrides(data, workdir))
    set_precision(cfg.trainer.precision)
    catalog = load_catalog(cfg.dataset)
    base = decode(catalog.files[catalog.files["split"] == "train"], catalog.classes, SIZE)
    series = []
    for factor in factors:
        data_x = DecodedImages(np.concatenate([base.images] * factor), np.concatenate([base.labels] * factor),
                               base.files, {})
        model = build(cfg.model, "model", input_shape=(SIZE, SIZE, 3), num_classes=len(catalog.classes))
        model.compile(optimizer="adam", loss="categorical_crossentropy")
        dataset = make_dataset(data_x, len(catalog.classes), BATCH, True, SEED)
        model.fit(dataset.take(2), verbose=0)  # build and warm up the graph
        begin = time.perf_counter()
        model.fit(dataset, verbose=0)
        seconds = time.perf_counter() - begin
        series.append({"factor": factor, "images": len(data_x.labels), "epoch_s": seconds,
                       "seconds_per_1000_images": 1000 * seconds / len(data_x.labels)})
        keras.backend.clear_session()
    return series


def _child(args: argparse.Namespace) -> None:
    result = run_variant(args.variant, args.data, args.epochs, args.workdir)
    Path(args.result).write_text(json.dumps(result))


def run_benchmark(data: str | None, epochs: int, tracked_epochs: int, repeats: int, out: Path,
                  keras_backends: tuple[str, ...] = backends.BACKENDS) -> dict[str, Any]:
    """Every variant in its own process, interleaved; then the Augmentor and scaling timings."""
    workdir = Path(tempfile.mkdtemp(prefix="melanoma-bench-"))
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    # a throw-away first run generates synthetic data and warms the file cache for everyone
    for repeat in range(repeats + 1):
        for variant in VARIANTS if repeat else ("untracked",):
            result_file = workdir / f"{variant}-{repeat}.json"
            variant_epochs = tracked_epochs if variant in TRACKING_PAIR else epochs
            command = [sys.executable, "-m", "melanoma_lab.bench.throughput", "--variant", variant, "--epochs", str(variant_epochs),
                       "--workdir", str(workdir), "--result", str(result_file)] + (["--data", data] if data else [])
            subprocess.run(command, check=True, env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2"})
            if repeat:
                runs[variant].append(json.loads(result_file.read_text()))
                print(f"  {variant:<10} repeat {repeat}: {runs[variant][-1]['images_per_s']:.0f} images/s", flush=True)
    summary = {v: _median_of(runs[v]) for v in VARIANTS}
    lab = runs["lab"]
    results = {"data": data or "synthetic", "epochs": epochs, "tracked_epochs": tracked_epochs, "repeats": repeats,
               "variants": summary, "runs": runs,
               "speedup_vs_seed": summary["lab"]["images_per_s"] / summary["seed"]["images_per_s"],
               "tracking_seconds": statistics.median(r["tracking_seconds"] for r in lab),
               "tracking_overhead": statistics.median(r["tracking_seconds"] / (r["run_seconds"] - r["tracking_seconds"])
                                                      for r in lab),
               "tracking_overhead_wall": summary["lab"]["wall_s"] / summary["untracked"]["wall_s"] - 1,
               **time_augmentor(data, workdir), "scaling": time_scaling(data, workdir),
               "backends": backends.compare_backends(backends.write_arrays(data, workdir), epochs, repeats,
                                                     keras_backends) if keras_backends else {}}
    write_atomically(out, json.dumps(results, indent=2))
    return results


def _median_of(runs: list[dict[str, Any]]) -> dict[str, float]:
    keys = ("images_per_s", "time_to_first_batch_s", "validation_s", "wall_s", "peak_rss_mb", "final_val_accuracy")
    return {k: statistics.median(r[k] for r in runs) for k in keys}


def format_table(results: dict[str, Any]) -> str:
    rows = [f"{'variant':<10} {'images/s':>9} {'first batch s':>14} {'val s/epoch':>12} {'wall s':>8} "
            f"{'peak RSS MB':>12} {'val acc':>8}"]
    for name, v in results["variants"].items():
        rows.append(f"{name:<10} {v['images_per_s']:>9.0f} {v['time_to_first_batch_s']:>14.1f} "
                    f"{v['validation_s']:>12.2f} {v['wall_s']:>8.1f} {v['peak_rss_mb']:>12.0f} "
                    f"{v['final_val_accuracy']:>8.3f}")
    rows.append(f"augmentor ({results['augmentor_images']} images, {results['augmentor_workers']} workers): "
                f"cold {results['augmentor_cold_s']:.1f} s, warm {results['augmentor_warm_s']:.3f} s")
    rows.append("scaling: " + ", ".join(f"{s['factor']}x {s['images']} images {s['epoch_s']:.1f} s "
                                        f"({s['seconds_per_1000_images']:.2f} s/1000)" for s in results["scaling"]))
    rows.append(f"tracking ({results['tracked_epochs']}-epoch lab runs): {results['tracking_seconds']:.1f} s in MLflow "
                f"calls per run = {results['tracking_overhead']:.3f} of the untracked time; lab/untracked wall "
                f"{results['tracking_overhead_wall']:+.3f}")
    rows += backends.format_rows(results.get("backends", {}))
    rows.append(f"speedup_vs_seed={results['speedup_vs_seed']:.2f} "
                f"tracking_overhead={results['tracking_overhead']:.3f}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REAL_DATA) if REAL_DATA.is_dir() else None,
                        help="a Train/<class>/ folder tree (default: the real copy if present, else synthetic)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per training (the first is not timed)")
    parser.add_argument("--tracked-epochs", type=int, default=12,
                        help="epochs of the lab and untracked runs (the tracking overhead is measured on them)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions of every variant")
    parser.add_argument("--out", type=Path, default=Path("bench/results.json"))
    parser.add_argument("--backends", type=lambda text: tuple(filter(None, text.split(","))), default=backends.BACKENDS,
                        help="Keras backends of the backend column, comma-separated ('' skips it)")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.epochs, args.tracked_epochs) < 2 or args.repeats < 1:
        parser.error("--epochs and --tracked-epochs must be at least 2 (the first epoch is not timed) and --repeats "
                     "at least 1")
    if set(args.backends) - set(backends.BACKENDS):
        parser.error(f"--backends takes {','.join(backends.BACKENDS)} (comma-separated), not {','.join(args.backends)}")
    if args.variant:
        _child(args)
        return 0
    print(format_table(run_benchmark(args.data, args.epochs, args.tracked_epochs, args.repeats, args.out,
                                     args.backends)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
