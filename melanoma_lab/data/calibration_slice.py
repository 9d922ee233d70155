"""The calibration slice of a cross-validation with a fold ensemble (``study.ensemble=true``): a grouped, stratified
share of the Train images (``study.calibration_fraction``) held out before the folds are made, so that no fold model
trains or validates on it. The ensemble's alert threshold is chosen there, on the ensemble's own averaged
probabilities (:mod:`melanoma_lab.study.calibration`).

Light on purpose (pandas and the splits only): the run identity (:mod:`melanoma_lab.tracking.identity`) reads
:func:`calibration_fraction`, because the slice changes which images the folds hold.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from melanoma_lab.data.split import train_val_split
from melanoma_lab.errors import ConfigError

# what chose a fold ensemble's threshold (its metadata's alert_threshold_source)
SLICE = "calibration_slice"  # the ensemble's own averaged probabilities on the calibration slice
MEMBER_OOF = "member_out_of_fold"  # the fold models' pooled out-of-fold predictions (not the ensemble's)


def calibration_fraction(study: Mapping) -> float:
    """The share of Train held out for the ensemble's threshold: ``study.calibration_fraction`` for a cross-validation
    with ``study.ensemble=true``, else 0 (folds of a CV without an ensemble are as before, and shared with it when
    the fraction is 0). ``study``: the ``study`` group (a DictConfig or its resolved dict)."""
    if not study.get("ensemble", False) or int(study.get("cv_folds", 1)) < 2:
        return 0.0
    fraction = study.get("calibration_fraction", 0.0)
    fraction = 0.0 if fraction is None else float(fraction)
    if not 0.0 <= fraction < 0.5:
        raise ConfigError(f"study.calibration_fraction={fraction!r} must be 0 (choose the ensemble's threshold on "
                          "its members' out-of-fold predictions, as before) or between 0 and 0.5 (the share of "
                          "Train held out before the folds for the ensemble's own threshold)")
    return fraction


def split_off_calibration(labelled: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the rest, the calibration slice) of the Train rows ``labelled``: about ``fraction`` of them, stratified by
    class and grouped like every split (copies, near-copies and one lesion's images on one side). The rest is what
    the folds are made of. ``fraction`` 0: everything, and an empty slice."""
    if fraction <= 0:
        return labelled.reset_index(drop=True), labelled.iloc[:0].reset_index(drop=True)
    return train_val_split(labelled, fraction, seed)


def calibration_slice(files: pd.DataFrame, study: Mapping, seed: int) -> pd.DataFrame:
    """The calibration slice of ``files`` (the audited catalog's files; ``seed``: ``trainer.seed``), the same rows
    every fold of the cross-validation leaves out (:func:`melanoma_lab.study.preparation.split_labelled`)."""
    labelled = files[files["split"] == "train"].reset_index(drop=True)
    return split_off_calibration(labelled, calibration_fraction(study), seed)[1]


def identity_tags(study: Mapping) -> dict[str, str]:
    """What the slice adds to the identity of a fold (and of its CV parent): the fraction, when there is a slice
    (a fold of a CV without one keeps the identity it had)."""
    fraction = calibration_fraction(study)
    return {"calibration_fraction": f"{fraction:g}"} if fraction > 0 else {}
