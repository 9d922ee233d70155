"""The fold ensemble's own alert threshold and operating point (``study.ensemble=true``).

The ensemble serves the *average* of its members' probabilities, which is distributed otherwise than each member's
(a sharper mean, another calibration), so its threshold is chosen on its own averaged probabilities, on images no
member trained or validated on: the calibration slice (:mod:`melanoma_lab.data.calibration_slice`), with the rule
of every run (:func:`melanoma_lab.evaluation.metrics.calibrate_alert`). Its operating point there, and its Test
numbers, come with percentile bootstrap intervals that resample the split's groups (copies and one lesion's images
are drawn together), for the metrics the registry shows with an interval (:data:`registry.INTERVAL`). With no slice
(``study.calibration_fraction=0``), or one without a melanoma, the threshold comes from the members' pooled
out-of-fold predictions, as before, and the metadata says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from melanoma_lab.data.calibration_slice import MEMBER_OOF, SLICE
from melanoma_lab.evaluation import registry
from melanoma_lab.evaluation.bootstrap import percentile_interval, replicate_rows
from melanoma_lab.evaluation.metrics import AlertCalibration, calibrate_alert

PREFIX = "ensemble_calibration"  # the slice's metrics: ensemble_calibration_<metric>


@dataclass
class EnsembleCalibration:
    """The ensemble's alert threshold, what it was chosen on, and its numbers there (``ensemble_calibration_*``,
    with interval bounds; empty when chosen on member out-of-fold predictions)."""

    alert: AlertCalibration
    source: str  # SLICE | MEMBER_OOF
    chosen_on: str  # in words
    fraction: float
    images: int = 0  # in the calibration slice
    melanomas: int = 0
    metrics: dict[str, float] = field(default_factory=dict)

    def metadata(self) -> dict[str, object]:
        """What the registered ensemble carries about its threshold (besides the threshold itself)."""
        return {"alert_threshold_chosen_on": self.chosen_on, "alert_threshold_source": self.source,
                "calibration_fraction": self.fraction, "calibration_images": self.images,
                "calibration_melanomas": self.melanomas}

    def logged(self) -> dict[str, float]:
        """The parent's metrics: the slice's size and the operating point on it."""
        sizes = {f"{PREFIX}_images": self.images, f"{PREFIX}_melanomas": self.melanomas} if self.images else {}
        return sizes | self.metrics


def with_intervals(prefix: str, labels: np.ndarray, probabilities: np.ndarray, groups: pd.Series | np.ndarray,
                   classes: list[str], melanoma_class: str, threshold: float | None, samples: int,
                   confidence: float, seed: int = 0) -> dict[str, float]:
    """``<prefix>_<metric>`` and its bounds (``_ci_low``, ``_ci_high``) for each metric the registry shows with an
    interval under ``prefix``: a percentile bootstrap over ``groups`` (the split's group of each image) at the fixed
    ``threshold``. Balanced accuracy averages the classes of the whole sample in every replicate (a class drawn
    out of a replicate still counts, as a missing recall is left out, not a new class set)."""
    labels = np.asarray(labels)
    metrics = registry.shown_with(registry.INTERVAL, prefix)
    fixed = np.unique(labels)

    def scores(rows: np.ndarray) -> dict[str, float]:
        scored = registry.Scored(labels[rows], probabilities[rows], classes, melanoma_class, threshold, fixed)
        computed = {m.name: (registry.METRICS["balanced_accuracy_frequent"] if m.name == "balanced_accuracy"
                             else m).compute(scored) for m in metrics}
        return {name: value for name, value in computed.items() if value is not None}

    point = scores(np.arange(len(labels)))
    replicates = pd.DataFrame([scores(rows) for rows in replicate_rows(groups, samples, seed)])
    out = {}
    for name, value in point.items():
        low, high = percentile_interval(replicates[name] if name in replicates else [np.nan], confidence)
        key = f"{prefix}_{name}"
        out |= {key: float(value), **dict(zip(registry.interval_keys(key), (float(low), float(high))))}
    return out


def on_slice(labels: np.ndarray, probabilities: np.ndarray, groups: pd.Series | np.ndarray, classes: list[str],
             melanoma_class: str, sensitivity: float, fraction: float, samples: int, confidence: float
             ) -> EnsembleCalibration | None:
    """The threshold chosen on the ensemble's own ``probabilities`` of the calibration slice (rule of
    :func:`calibrate_alert`) with its operating point there; None when the slice cannot give one (no melanoma)."""
    alert = calibrate_alert(labels, probabilities, classes, melanoma_class, sensitivity)
    if alert.threshold is None:
        return None
    melanomas = int((np.asarray(labels) == classes.index(melanoma_class)).sum())
    chosen_on = (f"the fold ensemble's own averaged probabilities on a calibration slice of {len(labels)} Train "
                 f"images ({melanomas} {melanoma_class}) that no fold model trained or validated on "
                 f"(study.calibration_fraction={fraction:g})")
    metrics = with_intervals(PREFIX, labels, probabilities, groups, classes, melanoma_class, alert.threshold,
                             samples, confidence)
    return EnsembleCalibration(alert, SLICE, chosen_on, fraction, len(labels), melanomas, metrics)


def on_member_oof(labels: np.ndarray, probabilities: np.ndarray, classes: list[str], melanoma_class: str,
                  sensitivity: float, fraction: float, why: str) -> EnsembleCalibration:
    """The fallback: the threshold chosen on the members' pooled out-of-fold ``probabilities`` (``why``: no slice,
    or none usable), said as such."""
    alert = calibrate_alert(labels, probabilities, classes, melanoma_class, sensitivity)
    chosen_on = (f"out-of-fold predictions of the individual fold models ({why}): not the ensemble's own "
                 "averaged probabilities")
    return EnsembleCalibration(alert, MEMBER_OOF, chosen_on, fraction)
