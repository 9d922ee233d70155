"""Benchmark: how fast each recipe's model trains and predicts on this machine (``make bench-models``; also the
model rows of ``make bench``).

    melanoma-lab bench-models [--rows m5,m6,m6-bf16] [--images 256] [--repeats 3] [--out bench/models.json]

Per row, in its own process: the experiment's model built and compiled as its runs do (its input size, its
precision, for m6 the fine-tuning phase's trainable layers), then on random 8-bit images of that size one
untimed warm-up epoch of ``fit`` and ``--repeats`` timed ones, and prediction with one view and with the
experiment's test-time views. Reports the medians as images per second. A row is an experiment plus overrides:
``m6-bf16`` is m6 with ``trainer.precision=mixed_bfloat16`` (why m6 trains in float32 on a CPU).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from melanoma_lab.data.staging import write_atomically

ROWS = {"m5": ["experiment=m5"], "m6": ["experiment=m6"],
        "m6-bf16": ["experiment=m6", "trainer.precision=mixed_bfloat16"],
        "m6-head": ["experiment=m6", "model.trainable_backbone=false"]}  # the head-only epochs' cost


def measure(overrides: list[str], images: int, repeats: int) -> dict[str, Any]:
    """Training and prediction images/s of the model ``overrides`` configure (in this process)."""
    import keras
    import numpy as np

    from melanoma_lab.config.compose import compose
    from melanoma_lab.evaluation.inference import predict_probabilities, tta_mode, tta_views
    from melanoma_lab.training.fit import TrainingRecipe, compile_model

    cfg = compose([*overrides, "dataset=synthetic"])
    size, batch = cfg.dataset.image_size, cfg.dataset.batch_size
    model, _ = compile_model(TrainingRecipe(*map(cfg.get, TrainingRecipe._fields)), 9, steps=-(-images // batch))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (images, size, size, 3), dtype=np.uint8).astype(np.float32)
    y = np.eye(9, dtype=np.float32)[rng.integers(0, 9, images)]
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)  # build, trace, warm caches
    predict_probabilities(model, x[:batch], batch, "none")
    fits, predictions, views = [], [], []
    tta = tta_mode(cfg.evaluation.tta)
    for _ in range(repeats):
        started = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
        fits.append(time.perf_counter() - started)
        started = time.perf_counter()
        predict_probabilities(model, x, batch, "none")
        predictions.append(time.perf_counter() - started)
        started = time.perf_counter()
        predict_probabilities(model, x, batch, tta)
        views.append(time.perf_counter() - started)
    return {"overrides": overrides, "image_size": size, "precision": keras.mixed_precision.global_policy().name,
            "trainable_weights": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
            "train_images_per_s": images / statistics.median(fits),
            "predict_images_per_s": images / statistics.median(predictions),
            "tta": tta, "tta_views": len(tta_views(x[:1], tta)),
            "predict_tta_images_per_s": images / statistics.median(views), "repeats": repeats, "images": images}


def format_table(rows: dict[str, dict[str, Any]]) -> str:
    lines = ["| row | size | precision | trainable weights | train img/s | predict img/s (1 view) | "
             "predict img/s (TTA) |", "|---|---|---|---|---|---|---|"]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['image_size']} | {row['precision']} | {row['trainable_weights']:,} | "
                     f"{row['train_images_per_s']:.1f} | {row['predict_images_per_s']:.1f} | "
                     f"{row['predict_tta_images_per_s']:.1f} ({row['tta']}, {row['tta_views']} views) |")
    return "\n".join(lines)


def run(rows: list[str], images: int, repeats: int) -> dict[str, dict[str, Any]]:
    """Every row in its own process (one model's graphs and threads never slow the next's)."""
    results = {}
    for name in rows:
        done = subprocess.run([sys.executable, "-m", "melanoma_lab.bench.models", "--child", name, "--images",
                               str(images), "--repeats", str(repeats)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"bench row {name} failed:\n{done.stderr[-3000:]}")
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="m5,m6,m6-bf16,m6-head",
                        help=f"comma-separated, of {', '.join(ROWS)}")
    parser.add_argument("--images", type=int, default=256, help="random images per timed epoch")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs (and prediction passes); medians")
    parser.add_argument("--out", type=Path, default=Path("bench/models.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(ROWS[args.child], args.images, args.repeats)))
        return 0
    rows = [r for r in args.rows.split(",") if r]
    unknown = sorted(set(rows) - set(ROWS))
    if unknown or args.images < 1 or args.repeats < 1:
        parser.error(f"--rows takes {', '.join(ROWS)} (not {', '.join(unknown)}); --images and --repeats >= 1")
    results = run(rows, args.images, args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(args.out, json.dumps(results, indent=2))
    print(format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
