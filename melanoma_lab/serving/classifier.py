"""The served model: an MLflow pyfunc that takes raw images and returns class probabilities and the alert.

Clients send each image as base64-encoded file bytes (JPEG, PNG, any size or mode) in an ``image`` column,
e.g. ``POST /invocations {"dataframe_records": [{"image": "<base64>"}]}``; the model decodes and resizes it
exactly like the run's evaluation (with its test-time augmentation), so no client needs to know the input size.
A row that is not a readable image gets an ``error`` and no probabilities; the other rows are still predicted.
A model whose validation held no melanoma has no calibrated alert: ``melanoma_alert`` is null and ``alert_note``
says why. Each row has the input check's verdict (:mod:`melanoma_lab.evaluation.ood`):
``out_of_distribution`` (true: unlike the training lesions, and then never an alert; null: not checked, with
``ood_note`` saying why) and ``ood_score`` (the distance compared with the model's threshold). The Keras network
inside is loaded with Keras safe mode: nothing is unpickled. Its environment pins the package of the Keras backend
it was trained on (``keras_backend`` in its metadata), and a process that loads it before Keras is imported uses
that backend unless ``KERAS_BACKEND`` says otherwise.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
import pandas as pd
from omegaconf import DictConfig
from PIL import Image

from melanoma_lab.runtime import PACKAGES
from melanoma_lab.data.pipeline import load_image
from melanoma_lab.evaluation.inference import ModelSettings, tta_mode
from melanoma_lab.tracking.provenance import package_versions

if TYPE_CHECKING:
    from melanoma_lab.evaluation.metrics import AlertCalibration
    import keras

IMAGE_COLUMN = "image"
KERAS_ARTIFACT = "keras_model"
SETTINGS_ARTIFACT = "settings"  # settings.json: what the model needs besides its weights (ModelSettings)
# What a served model's environment pins (the versions of this environment), with its backend's PACKAGES.
SERVED_PACKAGES = ("keras", "mlflow", "pillow", "pandas", "numpy")
ENTRY_POINT = Path(__file__).with_name("served_model.py")


def encode_image(path: str | Path) -> str:
    """Base64 text of an image file, as the served model expects it."""
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


def decode_image(value: str | bytes, size: int) -> np.ndarray:
    """An RGB uint8 (size, size, 3) array from base64 text or raw file bytes."""
    raw = value if isinstance(value, bytes) else base64.b64decode(value, validate=True)
    return load_image(io.BytesIO(raw), size)


class LesionClassifier(mlflow.pyfunc.PythonModel):
    """Raw image in, nine class probabilities, top class, melanoma probability and alert out; predicted like the
    run's evaluation (:mod:`melanoma_lab.evaluation.inference`: same decoding, resizing and test-time augmentation)."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        if SETTINGS_ARTIFACT in context.artifacts:
            config = json.loads(Path(context.artifacts[SETTINGS_ARTIFACT]).read_text())
        else:  # a model logged before the settings artifact carries them as its model_config
            config = dict(context.model_config or {})
        self.settings = ModelSettings.from_metadata(config)
        os.environ.setdefault("KERAS_BACKEND", config.get("keras_backend", "tensorflow"))
        import keras  # after choosing the backend: a served environment may hold only the model's backend

        self.model = keras.saving.load_model(context.artifacts[KERAS_ARTIFACT], safe_mode=True)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        if IMAGE_COLUMN not in model_input:
            raise ValueError(f"input needs a column {IMAGE_COLUMN!r} of base64-encoded image files")
        settings = self.settings
        images, errors = [], []
        for value in model_input[IMAGE_COLUMN]:
            try:
                images.append(decode_image(value, settings.image_size))
                errors.append("")
            except (OSError, ValueError, binascii.Error, Image.DecompressionBombError) as error:
                images.append(None)
                errors.append(f"cannot read as an image ({type(error).__name__}: {error})")
        probabilities = settings.probabilities(self.model, images)
        table = pd.DataFrame(probabilities, columns=settings.classes)
        top = np.nan_to_num(probabilities, nan=-1.0).argmax(axis=1)
        table["top_class"] = [settings.classes[t] if not e else "" for t, e in zip(top, errors)]
        table["melanoma_probability"] = settings.melanoma_probability(probabilities)
        flagged, scores = settings.out_of_distribution(images)
        table["melanoma_alert"] = settings.alerts(probabilities, flagged)
        table["alert_note"] = settings.alert_note
        table["out_of_distribution"] = flagged
        table["ood_score"] = [np.nan if score is None else score for score in scores]
        table["ood_note"] = settings.ood_note
        table["error"] = errors
        return table


def signature(classes: list[str]) -> ModelSignature:
    """What :class:`LesionClassifier` takes and returns (given, so logging needs no extra prediction to infer it)."""
    outputs = [ColSpec("double", name) for name in classes] + [
        ColSpec("string", "top_class"), ColSpec("double", "melanoma_probability"),
        ColSpec("boolean", "melanoma_alert", required=False), ColSpec("string", "alert_note"),
        ColSpec("boolean", "out_of_distribution", required=False), ColSpec("double", "ood_score", required=False),
        ColSpec("string", "ood_note"), ColSpec("string", "error")]
    return ModelSignature(inputs=Schema([ColSpec("string", IMAGE_COLUMN)]), outputs=Schema(outputs))


def served_requirements(backend: str) -> list[str]:
    """``name==version`` of the :data:`SERVED_PACKAGES` and ``backend``'s packages installed here (without a local
    version label such as ``+cpu``, which only its maker's package index serves)."""
    served = (*SERVED_PACKAGES, *PACKAGES.get(backend, ()))
    return [f"{name}=={version.split('+')[0]}" for name, version in package_versions().items() if name in served]


def log_classifier(model: keras.Model, example_image: np.ndarray, config: dict[str, Any]) -> None:
    """Log ``model`` as a :class:`LesionClassifier` named ``model`` in the active MLflow run.

    The model is defined from code (``served_model.py`` plus this package), so loading it runs no pickle;
    ``config`` (class names, input size, alert threshold, input check) and the Keras backend (``keras_backend``)
    are both its metadata (the MLmodel file, what ``predict`` reads) and its ``settings.json`` artifact (what
    the pyfunc loads). Not MLflow's ``model_config``: MLflow logs that as params of the run too, where the input
    check's matrices would be truncated to 6,000 characters and mixed into the run's Hydra config.
    """
    import keras

    config = {**config, "keras_backend": keras.backend.backend()}
    requirements = served_requirements(config["keras_backend"])
    with tempfile.TemporaryDirectory() as scratch:
        keras_file = os.path.join(scratch, "classifier.keras")
        model.save(keras_file)
        settings_file = Path(scratch, "settings.json")
        settings_file.write_text(json.dumps(config))
        buffer = io.BytesIO()
        Image.fromarray(example_image).save(buffer, format="PNG")
        example = pd.DataFrame({IMAGE_COLUMN: [base64.b64encode(buffer.getvalue()).decode("ascii")]})
        mlflow.pyfunc.log_model(name="model", python_model=str(ENTRY_POINT),
                                artifacts={KERAS_ARTIFACT: keras_file, SETTINGS_ARTIFACT: str(settings_file)},
                                metadata=config, input_example=example,
                                signature=signature(list(config["classes"])),
                                code_paths=[str(Path(__file__).parents[1])], pip_requirements=requirements)


def model_metadata(dataset: DictConfig, evaluation: DictConfig, classes: list[str], alert: AlertCalibration) -> dict:
    """What a logged model carries besides its weights (:class:`melanoma_lab.evaluation.inference.ModelSettings`)."""
    return {"classes": classes, "image_size": dataset.image_size, "melanoma_class": dataset.melanoma_class,
            "alert_target_sensitivity": evaluation.fixed_sensitivity, **alert.metadata(),
            "tta": tta_mode(evaluation.tta), "batch_size": dataset.batch_size,
            "colour_constancy_power": dataset.get("colour_constancy_power"),
            "colour_constancy_grey": dataset.get("colour_constancy_grey")}
