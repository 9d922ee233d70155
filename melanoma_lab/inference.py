"""The one prediction path of melanoma_lab, shared by evaluation (experiment.py), ``predict`` and the served model.

Images are decoded with :func:`melanoma_lab.data.pipeline.load_image` (RGB, bilinear resize to the input size) and
predicted as float32 in [0, 255]; with test-time augmentation (``evaluation.tta``) the probabilities are the mean over
the image and its horizontal and vertical flips. A logged model's metadata (:class:`ModelSettings`) carries the input
size, the TTA setting, the batch size and the melanoma alert threshold chosen on validation (or why there is none),
so ``predict`` and serving reproduce the run's evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

if TYPE_CHECKING:
    import keras

NO_ALERT_NOTE = "this model has no calibrated melanoma alert"


def tta_views(images: np.ndarray, tta: bool) -> list[np.ndarray]:
    """The views whose predictions are averaged: the images, and with ``tta`` their horizontal and vertical flips."""
    return [images, images[:, :, ::-1], images[:, ::-1]] if tta else [images]


def predict_probabilities(model: keras.Model, images: np.ndarray, batch_size: int, tta: bool) -> np.ndarray:
    """Class probabilities of uint8 (or float) images; with ``tta`` the mean over :func:`tta_views`."""
    views = tta_views(images, tta)
    return np.mean([model.predict(v.astype(np.float32), batch_size=batch_size, verbose=0) for v in views], axis=0)


@dataclass(frozen=True)
class ModelSettings:
    """What a logged model needs besides its weights to predict exactly like its run's evaluation."""

    classes: list[str]
    image_size: int
    melanoma_class: str
    threshold: float | None  # chosen on validation; None: the model has no calibrated alert
    alert_note: str = ""  # why there is no alert ('' when there is one)
    tta: bool = False
    batch_size: int = 32

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> "ModelSettings":
        threshold = metadata.get("melanoma_alert_threshold")
        note = "" if threshold is not None else metadata.get("melanoma_alert_note") or (
            f"{NO_ALERT_NOTE} (no alert threshold in its metadata)")
        return cls(classes=list(metadata["classes"]), image_size=int(metadata["image_size"]),
                   melanoma_class=str(metadata["melanoma_class"]),
                   threshold=None if threshold is None else float(threshold), alert_note=note,
                   tta=bool(metadata.get("tta", False)), batch_size=int(metadata.get("batch_size", 32)))

    def probabilities(self, model: keras.Model, images: list[np.ndarray | None]) -> np.ndarray:
        """(n, classes) probabilities; a row of NaN where the image is None (it could not be read)."""
        readable = [i for i, image in enumerate(images) if image is not None]
        probabilities = np.full((len(images), len(self.classes)), np.nan)
        if readable:
            batch = np.stack([images[i] for i in readable])
            probabilities[readable] = predict_probabilities(model, batch, self.batch_size, self.tta)
        return probabilities

    def melanoma_probability(self, probabilities: np.ndarray) -> np.ndarray:
        """p(melanoma) per row (NaN when the classes have no melanoma class)."""
        if self.melanoma_class not in self.classes:
            return np.full(len(probabilities), np.nan)
        return probabilities[:, self.classes.index(self.melanoma_class)]

    def alerts(self, probabilities: np.ndarray) -> list[bool | None]:
        """The melanoma alert per row (p(melanoma) >= threshold); None for every row without a calibrated alert
        and for rows without probabilities."""
        p_mel = self.melanoma_probability(probabilities)
        if self.threshold is None:
            return [None] * len(p_mel)
        return [None if np.isnan(p) else bool(p >= self.threshold) for p in p_mel]
