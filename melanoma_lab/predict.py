"""Predict lesion classes for images, with a melanoma alert and optional Grad-CAM overlays.

    python -m melanoma_lab.predict IMAGE_OR_FOLDER... [--model MODEL_URI] [--json] [--out DIR]

``MODEL_URI`` is any MLflow model URI of a model logged by melanoma_lab (default: the registered
champion ``models:/melanoma-classifier@champion``, see ``python -m melanoma_lab.promote``; or
``runs:/<run_id>/model``, ``models:/<model_id>``). Class names, input size and the melanoma alert
threshold (chosen on validation data) come from the model's metadata. Each image is read like training
data (any size or mode); a file that cannot be read gets a one-line error and the others are still
predicted. ``--out`` writes ``predictions.csv`` and one Grad-CAM overlay PNG per image.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import keras
import mlflow
import numpy as np

from melanoma_lab.data.pipeline import load_image
from melanoma_lab.gradcam import grad_cam
from melanoma_lab.tracking import tracking_uri

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@dataclass
class Prediction:
    path: str
    probabilities: dict[str, float]
    top_class: str
    melanoma_probability: float
    alert: bool


@dataclass
class LoadedModel:
    model: keras.Model
    classes: list[str]
    image_size: int
    melanoma_class: str
    threshold: float


def load_model(uri: str) -> LoadedModel:
    """Load a melanoma_lab model (defined from code, Keras safe mode: nothing is unpickled)."""
    info = mlflow.models.get_model_info(uri)
    metadata = info.metadata or {}
    missing = {"classes", "image_size"} - set(metadata)
    if missing:
        raise ValueError(f"{uri} has no melanoma_lab metadata ({', '.join(sorted(missing))}): log it with "
                         "melanoma_lab (python -m melanoma_lab ...)")
    classifier = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    return LoadedModel(classifier.model, classifier.classes, classifier.image_size, classifier.melanoma_class,
                       classifier.threshold)


def expand(inputs: list[str]) -> list[Path]:
    """Files as given, and the image files inside given folders (sorted)."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            paths += sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            paths.append(item)
    return paths


def predict(loaded: LoadedModel, images: np.ndarray, paths: list[str]) -> list[Prediction]:
    probabilities = loaded.model.predict(images.astype(np.float32), verbose=0)
    mel = loaded.classes.index(loaded.melanoma_class) if loaded.melanoma_class in loaded.classes else None
    out = []
    for path, row in zip(paths, probabilities):
        p_mel = float(row[mel]) if mel is not None else 0.0
        out.append(Prediction(path, {c: float(p) for c, p in zip(loaded.classes, row)},
                              loaded.classes[int(row.argmax())], p_mel, mel is not None and p_mel >= loaded.threshold))
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


def describe(prediction: Prediction, threshold: float) -> str:
    ranked = sorted(prediction.probabilities.items(), key=lambda item: -item[1])
    lines = [f"{prediction.path}: {prediction.top_class} ({prediction.probabilities[prediction.top_class]:.3f})",
             "  " + ", ".join(f"{name} {p:.3f}" for name, p in ranked)]
    if prediction.alert:
        lines.append(f"  MELANOMA ALERT: p(melanoma) = {prediction.melanoma_probability:.3f} >= threshold "
                     f"{threshold:.3f} — refer to a dermatologist")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="image files or folders")
    parser.add_argument("--model", default="models:/melanoma-classifier@champion",
                        help="MLflow model URI (default: the champion; or runs:/<run_id>/model)")
    parser.add_argument("--tracking-uri", default=None, help="default: MLFLOW_TRACKING_URI or ./mlruns")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--out", type=Path, help="folder for predictions.csv and Grad-CAM overlays")
    args = parser.parse_args(argv)
    mlflow.set_tracking_uri(tracking_uri(args.tracking_uri, "mlruns"))
    try:
        loaded = load_model(args.model)
    except Exception as error:  # noqa: BLE001 - any load failure is one clear message
        print(f"error: cannot load model {args.model}: {error}", file=sys.stderr)
        return 2
    images, paths, failures = [], [], 0
    for path in expand(args.inputs):
        try:
            images.append(load_image(str(path), loaded.image_size))
            paths.append(str(path))
        except Exception as error:  # noqa: BLE001 - report the file, keep predicting the others
            failures += 1
            print(f"error: {path}: cannot read as an image ({type(error).__name__}: {error})", file=sys.stderr)
    predictions = predict(loaded, np.stack(images), paths) if images else []
    if args.json:
        print(json.dumps({"threshold": loaded.threshold, "predictions": [vars(p) for p in predictions]}, indent=2))
    else:
        for prediction in predictions:
            print(describe(prediction, loaded.threshold))
    if args.out and predictions:
        args.out.mkdir(parents=True, exist_ok=True)
        with (args.out / "predictions.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "top_class", "melanoma_probability", "alert", *loaded.classes])
            for p in predictions:
                writer.writerow([p.path, p.top_class, f"{p.melanoma_probability:.5f}", p.alert,
                                 *(f"{p.probabilities[c]:.5f}" for c in loaded.classes)])
        for index, (prediction, image) in enumerate(zip(predictions, images)):
            heatmap = grad_cam(loaded.model, image, loaded.classes.index(prediction.top_class))
            title = f"{prediction.top_class} {prediction.probabilities[prediction.top_class]:.2f}" + (
                "  MELANOMA ALERT" if prediction.alert else "")
            save_overlay(image, heatmap, title, args.out / f"{index:04d}_{Path(prediction.path).stem}_gradcam.png")
    return 1 if failures and not predictions else 0


if __name__ == "__main__":
    sys.exit(main())
