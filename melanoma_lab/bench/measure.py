"""What every benchmark measures with: its data, batch, seed, peak memory and the per-epoch timing of ``fit``."""

from __future__ import annotations

import resource
import statistics
import time
from pathlib import Path
from typing import Any

REAL_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "isic-9class-180px"
SIZE, BATCH, SEED = 180, 32, 123


def peak_rss_mb() -> float:
    """The peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def data_overrides(data: str | None, workdir: Path) -> list[str]:
    """Hydra overrides selecting the benchmark data: a folder, or synthetic 180 px with ISIC-like counts."""
    if data:
        return [f"dataset.root={Path(data).resolve()}", f"paths.root_dir={workdir}"]
    return ["dataset=synthetic", f"dataset.image_size={SIZE}", f"dataset.source.generated_size={SIZE}",
            "dataset.source.train_images=2239", "dataset.source.test_images=90", f"paths.root_dir={workdir}"]


class FitTimer:
    """A Keras callback on every ``fit``: time to first batch, per-epoch training and validation seconds."""

    def __init__(self, started: float) -> None:
        import keras

        timer = self

        class _Callback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                timer.epoch_start = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                timer.last_batch, timer.batches = time.perf_counter(), batch + 1
                if timer.first_batch_s is None:
                    timer.first_batch_s = timer.last_batch - started

            def on_epoch_end(self, epoch, logs=None):  # runs after the other callbacks (validation included)
                timer.epochs.append({"train_s": timer.last_batch - timer.epoch_start,
                                     "validation_s": time.perf_counter() - timer.last_batch,
                                     "images": timer.batches * BATCH,
                                     "val_accuracy": (logs or {}).get("val_accuracy")})

        self.callback = _Callback()
        self.first_batch_s: float | None = None
        self.epochs: list[dict[str, Any]] = []
        self.epoch_start = self.last_batch = started
        self.batches = 0

    def install(self) -> None:
        """Append the timer to the callbacks of every ``keras.Model.fit`` in this process."""
        import keras

        original, callback = keras.Model.fit, self.callback

        def fit(model, *args, callbacks=None, **kwargs):
            return original(model, *args, callbacks=[*(callbacks or []), callback], **kwargs)

        keras.Model.fit = fit

    def summary(self, wall_s: float) -> dict[str, Any]:
        later = self.epochs[1:] or self.epochs
        return {"images_per_s": statistics.median(e["images"] / e["train_s"] for e in later),
                "time_to_first_batch_s": self.first_batch_s, "wall_s": wall_s,
                "validation_s": statistics.median(e["validation_s"] for e in later),
                "final_val_accuracy": self.epochs[-1]["val_accuracy"], "epochs": self.epochs,
                "peak_rss_mb": peak_rss_mb()}

