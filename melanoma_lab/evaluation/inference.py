"""The one prediction path of melanoma_lab, shared by evaluation (experiment.py), ``predict`` and the served model.

Images are decoded with :func:`melanoma_lab.data.pipeline.load_image` (RGB, bilinear resize to the input size) and
optionally colour-corrected (Shades of Gray, ``dataset.colour_constancy_power``), and predicted as float32 in
[0, 255]; with test-time augmentation (``evaluation.tta``: ``none``, ``flip`` or ``dihedral``) the probabilities are
the mean over the views of :data:`TTA_VIEWS`. A logged model's metadata (:class:`ModelSettings`) carries the input
size, the colour correction, the views, the batch size, the melanoma alert threshold chosen on validation (or why
there is none) and the input check (:mod:`melanoma_lab.evaluation.ood`: a flagged image gets no alert), so
``predict`` and serving reproduce the run's evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from melanoma_lab.data.colour import shades_of_gray
from melanoma_lab.errors import ConfigError
from melanoma_lab.evaluation.metrics import NO_ALERT_NOTE
from melanoma_lab.evaluation.ood import InputCheck, input_flags

if TYPE_CHECKING:
    import keras



TTA_VIEWS = {  # name -> the views of a (n, h, w, 3) batch whose predictions are averaged
    "none": lambda x: [x],
    "flip": lambda x: [x, x[:, :, ::-1], x[:, ::-1]],  # the image, its horizontal and its vertical flip
    "dihedral": lambda x: [np.rot90(v, k, axes=(1, 2)) for v in (x, x.transpose(0, 2, 1, 3)) for k in range(4)],
}
TTA_ALIASES = {"true": "flip", "false": "none"}  # the boolean evaluation.tta of models logged before the views


def tta_mode(tta: str | bool | None) -> str:
    """The name in :data:`TTA_VIEWS` of ``tta`` (``true``/``false`` are aliases of ``flip``/``none``)."""
    name = "none" if tta is None else str(tta).lower()
    name = TTA_ALIASES.get(name, name)
    if name not in TTA_VIEWS:
        raise ConfigError(f"evaluation.tta={tta!r} must be one of {', '.join(TTA_VIEWS)} (or true = flip, "
                          "false = none)")
    return name


def tta_views(images: np.ndarray, tta: str | bool) -> list[np.ndarray]:
    """The views whose predictions are averaged (:data:`TTA_VIEWS`)."""
    return TTA_VIEWS[tta_mode(tta)](images)


def preprocess(images: np.ndarray, colour_constancy_power: float | None,
               colour_constancy_grey: float | None = None) -> np.ndarray:
    """Decoded uint8 images as every model sees them: Shades of Gray colour constancy with this p-norm (and grey
    level: None keeps each image's intensity, see :func:`melanoma_lab.data.colour.shades_of_gray`), or as they are
    (power None)."""
    if colour_constancy_power is None:
        return images
    return shades_of_gray(images, colour_constancy_power, colour_constancy_grey)


def predict_probabilities(model: keras.Model, images: np.ndarray, batch_size: int, tta: str | bool) -> np.ndarray:
    """Class probabilities of (preprocessed) uint8 or float images: the mean over the :func:`tta_views`."""
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
    tta: str = "none"  # a name of TTA_VIEWS
    batch_size: int = 32
    colour_constancy_power: float | None = None  # Shades of Gray p-norm applied after decoding; None: off
    colour_constancy_grey: float | None = None  # its grey level (0-1); None: each image keeps its intensity
    input_check: InputCheck | None = None  # the out-of-distribution flag (None: the model has none, see ood_note)
    ood_note: str = ""  # why there is no input check ('' when there is one)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> "ModelSettings":
        threshold = metadata.get("melanoma_alert_threshold")
        note = "" if threshold is not None else metadata.get("melanoma_alert_note") or (
            f"{NO_ALERT_NOTE} (no alert threshold in its metadata)")
        check, ood_note = InputCheck.from_metadata(metadata)
        return cls(classes=list(metadata["classes"]), image_size=int(metadata["image_size"]),
                   melanoma_class=str(metadata["melanoma_class"]),
                   threshold=None if threshold is None else float(threshold), alert_note=note,
                   tta=tta_mode(metadata.get("tta")), batch_size=int(metadata.get("batch_size", 32)),
                   colour_constancy_power=metadata.get("colour_constancy_power"),
                   colour_constancy_grey=metadata.get("colour_constancy_grey"), input_check=check,
                   ood_note=ood_note)

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """Decoded uint8 image(s) as this model sees them (:func:`preprocess`)."""
        return preprocess(images, self.colour_constancy_power, self.colour_constancy_grey)

    def probabilities(self, model: keras.Model, images: list[np.ndarray | None]) -> np.ndarray:
        """(n, classes) probabilities; a row of NaN where the image is None (it could not be read)."""
        readable = [i for i, image in enumerate(images) if image is not None]
        probabilities = np.full((len(images), len(self.classes)), np.nan)
        if readable:
            batch = self.preprocess(np.stack([images[i] for i in readable]))
            probabilities[readable] = predict_probabilities(model, batch, self.batch_size, self.tta)
        return probabilities

    def melanoma_probability(self, probabilities: np.ndarray) -> np.ndarray:
        """p(melanoma) per row (NaN when the classes have no melanoma class)."""
        if self.melanoma_class not in self.classes:
            return np.full(len(probabilities), np.nan)
        return probabilities[:, self.classes.index(self.melanoma_class)]

    def out_of_distribution(self, images: list[np.ndarray | None]) -> tuple[list[bool | None], list[float | None]]:
        """(flag, distance) of each image's statistics as the model sees it (:mod:`melanoma_lab.evaluation.ood`);
        None where the image is None and for every image when the model has no input check."""
        seen = [None if image is None else self.preprocess(image) for image in images]
        return input_flags(self.input_check, seen)

    def alerts(self, probabilities: np.ndarray, flagged: list[bool | None] | None = None) -> list[bool | None]:
        """The melanoma alert per row (p(melanoma) >= threshold, and False where the row is ``flagged`` out of
        distribution); None for every row without a calibrated alert and for rows without probabilities."""
        p_mel = self.melanoma_probability(probabilities)
        if self.threshold is None:
            return [None] * len(p_mel)
        flagged = flagged or [None] * len(p_mel)
        return [None if np.isnan(p) else bool(p >= self.threshold) and not flag for p, flag in zip(p_mel, flagged)]
