"""The input check: is an image like the lesions the model was trained on? An out-of-distribution flag per image.

A blank, flat, noisy, printed or patterned picture still gets nine class probabilities, and without a check it may
get a melanoma alert. The check is model-independent: each image's :mod:`~melanoma_lab.evaluation.image_statistics`
(colour, contrast, texture, flatness, periodicity), as the model sees it (decoded, resized, colour-corrected), is
scored by its Mahalanobis distance to those of the run's training images (mean and a shrunk covariance), and an
image is flagged when its distance exceeds a threshold chosen on the validation images (never on Test): the
conformal quantile that leaves ``evaluation.ood_flag_rate`` of validation lesions above it. The fitted check
travels in the logged model's metadata (``input_check``), so ``predict`` and serving of the run flag the same
images; a flagged image never raises the melanoma alert. A model logged without it has no input check: its flag is
``None`` ("not checked", never a silent ``False``) and a note says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from melanoma_lab.evaluation.image_statistics import CHUNK, NAMES, image_statistics

SHRINKAGE = 0.1  # the covariance is (1 - s) * sample covariance + s * its diagonal: stable on a few hundred images
FIT_IMAGES = 4000  # at most this many training images (a seeded sample) are fitted: 21 statistics need no more
METADATA_KEY = "input_check"
UNAVAILABLE_NOTE = "this model has no input check (logged without one): out-of-distribution input is not flagged"


@dataclass(frozen=True, eq=False)  # eq=False: arrays inside; compared (and hashed) by identity
class InputCheck:
    """Training images' statistics (mean, inverse shrunk covariance) and the distance beyond which an image is
    flagged."""

    mean: np.ndarray
    precision: np.ndarray
    threshold: float
    target_rate: float  # evaluation.ood_flag_rate: the share of validation lesions the threshold may flag
    validation_rate: float  # the share it flags
    fitted_images: int
    validation_images: int

    @classmethod
    def fit(cls, training: np.ndarray, validation: np.ndarray, target_rate: float, seed: int = 0) -> InputCheck:
        """Fit on (a seeded sample of at most :data:`FIT_IMAGES` of) ``training``, read a chunk at a time (it may be
        a split decoded to disk); choose the threshold on ``validation`` (uint8 images as the model sees them)."""
        rows = np.arange(len(training))
        if len(rows) > FIT_IMAGES:
            rows = np.sort(np.random.default_rng(seed).choice(len(rows), FIT_IMAGES, replace=False))
        fitted = [image_statistics(training[rows[start:start + CHUNK]]) for start in range(0, len(rows), CHUNK)]
        return cls.of_statistics(np.concatenate(fitted) if fitted else np.zeros((0, len(NAMES))),
                                 image_statistics(validation), target_rate)

    @classmethod
    def of_statistics(cls, training: np.ndarray, validation: np.ndarray, target_rate: float) -> InputCheck:
        """:meth:`fit` on :func:`~melanoma_lab.evaluation.image_statistics.image_statistics` already computed."""
        if len(training) < 2 or not len(validation):
            raise ValueError(f"the input check needs 2 or more training images and 1 or more validation images "
                             f"(got {len(training)} and {len(validation)})")
        covariance = np.atleast_2d(np.cov(training, rowvar=False))
        covariance = (1 - SHRINKAGE) * covariance + SHRINKAGE * np.diag(np.diag(covariance))
        covariance += 1e-6 * np.eye(len(covariance))
        unfitted = cls(training.mean(axis=0), np.linalg.inv(covariance), math.inf, target_rate, 0.0,
                       len(training), len(validation))
        scores = unfitted.distances(validation)
        threshold = conformal_threshold(scores, target_rate)
        return cls(unfitted.mean, unfitted.precision, threshold, target_rate, float(np.mean(scores > threshold)),
                   len(training), len(validation))

    def scores(self, images: np.ndarray) -> np.ndarray:
        """The Mahalanobis distance of each image's statistics to the training images'."""
        return self.distances(image_statistics(images))

    def distances(self, statistics: np.ndarray) -> np.ndarray:
        """The Mahalanobis distance of each row of image statistics to the training images' mean."""
        centred = statistics - self.mean
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", centred, self.precision, centred), 0.0))

    def flag_rate(self, images: np.ndarray) -> float:
        """The share of ``images`` flagged (NaN for none)."""
        return float(np.mean(self.scores(images) > self.threshold)) if len(images) else math.nan

    def metadata(self) -> dict[str, Any]:
        """The check as the logged model's metadata (``input_check``: plain lists and numbers)."""
        return {METADATA_KEY: {
            "statistics": list(NAMES), "mean": self.mean.tolist(), "precision": self.precision.tolist(),
            "threshold": self.threshold, "target_flag_rate": self.target_rate,
            "validation_flag_rate": self.validation_rate, "fitted_images": self.fitted_images,
            "validation_images": self.validation_images, "chosen_on": "validation"}}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> tuple[InputCheck | None, str]:
        """The logged check and ``''``, or None and why there is none (an older model, other statistics)."""
        logged = metadata.get(METADATA_KEY)
        if not logged:
            return None, UNAVAILABLE_NOTE
        if list(logged.get("statistics", [])) != list(NAMES):
            return None, ("this model's input check was fitted on other image statistics than this version of "
                          "melanoma_lab computes: out-of-distribution input is not flagged")
        return cls(np.asarray(logged["mean"], float), np.asarray(logged["precision"], float),
                   float(logged["threshold"]), float(logged["target_flag_rate"]),
                   float(logged["validation_flag_rate"]), int(logged["fitted_images"]),
                   int(logged["validation_images"])), ""


def conformal_threshold(scores: np.ndarray, rate: float) -> float:
    """The ``ceil((n + 1)(1 - rate))``-th smallest of ``n`` validation scores: a new lesion exceeds it with
    probability at most ``rate`` (exchangeability); the largest score when ``n`` is too small for that."""
    ordered = np.sort(np.asarray(scores, float))
    rank = min(math.ceil((len(ordered) + 1) * (1 - rate)), len(ordered))
    return float(ordered[rank - 1])


def input_flags(check: InputCheck | None, images: list[np.ndarray | None]) -> tuple[list[bool | None],
                                                                                   list[float | None]]:
    """(flag, distance) per image: None for an unreadable image (None) and for every image without a check."""
    flags: list[bool | None] = [None] * len(images)
    scores: list[float | None] = [None] * len(images)
    readable = [i for i, image in enumerate(images) if image is not None]
    if check is None or not readable:
        return flags, scores
    for i, score in zip(readable, check.scores(np.stack([images[i] for i in readable]))):
        flags[i], scores[i] = bool(score > check.threshold), float(score)
    return flags, scores


def card_limit(metadata: Mapping[str, Any]) -> str:
    """The model card's line on out-of-distribution input."""
    check, _ = InputCheck.from_metadata(metadata)
    if check is None:
        return ("- out-of-distribution input (clinical photographs, other body sites, non-skin images) gets a "
                "confident-looking answer all the same: it is not detected")
    return (f"- out-of-distribution input: images whose colour and texture statistics lie beyond those of "
            f"{1 - check.validation_rate:.1%} of the validation lesions are flagged and get no alert (input "
            f"check, {check.fitted_images} training images); a clinical photograph of skin may still pass it")


def logged_input_check(model_uri: str) -> dict[str, Any]:
    """The ``input_check`` metadata of a logged model (``{}`` when it has none): a fold ensemble carries its first
    fold's, which depends on no network (fitted on that fold's training images, its threshold chosen on the
    fold's validation images)."""
    import mlflow

    metadata = mlflow.models.get_model_info(model_uri).metadata or {}
    return {METADATA_KEY: metadata[METADATA_KEY]} if METADATA_KEY in metadata else {}
