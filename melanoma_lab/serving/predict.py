"""Predict lesion classes for images, with a melanoma alert and optional Grad-CAM overlays.

    melanoma-lab predict IMAGE_OR_FOLDER... [--model MODEL_URI] [--json] [--out DIR] [key=value ...]

``MODEL_URI`` is any MLflow model URI of a model logged by melanoma_lab (default: ``serving.model_uri``, the
registered champion ``models:/melanoma-classifier@champion``, see ``melanoma-lab promote``; or
``runs:/<run_id>/model``, ``models:/<model_id>``), in the store that ``key=value`` overrides of ``conf/`` name
(``paths.root_dir=DIR``, ``tracking.tracking_uri=URI``: :mod:`melanoma_lab.config.arguments`), as for training.
Class names, input size, test-time augmentation and the melanoma alert threshold (chosen on validation data) come from the model's metadata, and each image goes
through the run's own evaluation path (:mod:`melanoma_lab.evaluation.inference`), so a run's Test folder gives its
``evaluation/test_predictions.csv``. A model whose validation held no melanoma has no calibrated alert: no
alerts, and a note says so. Each image is also checked against the training images' statistics
(:mod:`melanoma_lab.evaluation.ood`): one unlike them (blank, flat, noise, text, a pattern...) is flagged
``OUT OF DISTRIBUTION`` and never gets the alert; a model logged without the check says so, and its images are
not checked (``out_of_distribution`` null). Every input is answered: a file that cannot be read gets an error line (an
``error`` entry with ``--json``, an ``error`` column in ``predictions.csv``) and the others are still
predicted. ``--out`` writes ``predictions.csv`` and one Grad-CAM overlay PNG per readable image.
Exit status: 0 when every input was predicted, 1 when any could not be read, 2 when the model cannot be loaded.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

import keras
import mlflow
import numpy as np

from melanoma_lab.data.pipeline import load_image
from melanoma_lab.data.staging import write_atomically
from melanoma_lab.evaluation.inference import ModelSettings

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@dataclass
class Prediction:
    path: str
    probabilities: dict[str, float] | None  # None: the file could not be read (see ``error``)
    top_class: str | None
    melanoma_probability: float | None
    alert: bool | None  # None: unreadable, or the model has no calibrated alert; False when out_of_distribution
    error: str | None = None
    out_of_distribution: bool | None = None  # the input check's flag; None: unreadable, or the model has no check
    ood_score: float | None = None  # the distance the input check compared with its threshold


@dataclass
class LoadedModel:
    model: keras.Model
    settings: ModelSettings

    @property
    def classes(self) -> list[str]:
        return self.settings.classes

    @property
    def image_size(self) -> int:
        return self.settings.image_size


def load_model(uri: str) -> LoadedModel:
    """Load a melanoma_lab model (defined from code, Keras safe mode: nothing is unpickled)."""
    info = mlflow.models.get_model_info(uri)
    metadata = info.metadata or {}
    missing = {"classes", "image_size"} - set(metadata)
    if missing:
        raise ValueError(f"{uri} has no melanoma_lab metadata ({', '.join(sorted(missing))}): log it with "
                         "melanoma_lab (python -m melanoma_lab ...)")
    classifier = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    return LoadedModel(classifier.model, classifier.settings)


def expand(inputs: list[str]) -> list[Path]:
    """Files as given, and the image files inside given folders (sorted)."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            paths += sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            paths.append(item)
    return paths


def read_images(paths: list[Path], size: int) -> tuple[list[np.ndarray | None], list[str | None]]:
    """Each file decoded like the run's evaluation data, or None and why it could not be read."""
    images, errors = [], []
    for path in paths:
        try:
            images.append(load_image(str(path), size))
            errors.append(None)
        except Exception as error:  # noqa: BLE001 - report the file, keep predicting the others
            images.append(None)
            errors.append(f"cannot read as an image ({type(error).__name__}: {error})")
    return images, errors


def predict(loaded: LoadedModel, images: list[np.ndarray | None], paths: list[str],
            errors: list[str | None]) -> list[Prediction]:
    """One prediction per input, in order (an ``error`` and no probabilities where the image is None)."""
    settings = loaded.settings
    probabilities = settings.probabilities(loaded.model, images)
    flagged, scores = settings.out_of_distribution(images)
    p_mel, alerts = settings.melanoma_probability(probabilities), settings.alerts(probabilities, flagged)
    out = []
    for path, row, p, alert, error, flag, score in zip(paths, probabilities, p_mel, alerts, errors, flagged, scores):
        if error is not None:
            out.append(Prediction(path, None, None, None, None, error))
            continue
        out.append(Prediction(path, {c: float(q) for c, q in zip(settings.classes, row)},
                              settings.classes[int(row.argmax())], None if np.isnan(p) else float(p), alert,
                              out_of_distribution=flag, ood_score=score))
    return out


def save_overlay(image: np.ndarray, heatmap: np.ndarray, title: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(7, 3.6))
    axes[0].imshow(image)
    axes[1].imshow(image)
    axes[1].imshow(heatmap, cmap="jet", alpha=0.45)
    for ax, name in zip(axes, ("image", "Grad-CAM")):
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    staging = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(staging, dpi=100)
    plt.close(fig)
    os.replace(staging, path)


def describe(prediction: Prediction, threshold: float | None, melanoma_class: str,
             ood_threshold: float | None = None) -> str:
    if prediction.error is not None:
        return f"{prediction.path}: NOT PREDICTED: {prediction.error}"
    ranked = sorted(prediction.probabilities.items(), key=lambda item: -item[1])
    lines = [f"{prediction.path}: {prediction.top_class} ({prediction.probabilities[prediction.top_class]:.3f})",
             "  " + ", ".join(f"{name} {p:.3f}" for name, p in ranked)]
    if prediction.out_of_distribution:
        beyond = "" if ood_threshold is None else f" > {ood_threshold:.2f}"
        lines.append(f"  OUT OF DISTRIBUTION: unlike the training lesions (input check score "
                     f"{prediction.ood_score:.2f}{beyond}): the probabilities are meaningless and no melanoma alert "
                     "is given; check the image")
    if prediction.alert:
        lines.append(f"  MELANOMA ALERT: p({melanoma_class}) = {prediction.melanoma_probability:.3f} >= threshold "
                     f"{threshold:.3f} — refer to a dermatologist")
    return "\n".join(lines)


def write_csv(predictions: list[Prediction], classes: list[str], path: Path) -> None:
    def number(value: float | None) -> str:
        return "" if value is None else f"{value:.5f}"

    handle = io.StringIO(newline="")
    writer = csv.writer(handle)
    writer.writerow(["path", "top_class", "melanoma_probability", "alert", "out_of_distribution", "ood_score",
                     *classes, "error"])
    for p in predictions:
        writer.writerow([p.path, p.top_class or "", number(p.melanoma_probability), "" if p.alert is None else p.alert,
                         "" if p.out_of_distribution is None else p.out_of_distribution, number(p.ood_score),
                         *(number(p.probabilities and p.probabilities[c]) for c in classes), p.error or ""])
    write_atomically(path, handle.getvalue())


def input_check_summary(settings: ModelSettings) -> dict:
    """What ``predict --json`` says of the model's input check: its threshold and what it was chosen for, or why
    there is none (then no image is checked: ``out_of_distribution`` null)."""
    check = settings.input_check
    if check is None:
        return {"available": False, "note": settings.ood_note}
    return {"available": True, "threshold": check.threshold, "target_flag_rate": check.target_rate,
            "validation_flag_rate": check.validation_rate, "chosen_on": "validation"}
