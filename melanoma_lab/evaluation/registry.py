"""The metric registry: every metric once, with its one name, the function that computes it, its direction and
where it is shown. Every list of metric names (the epoch log and ``trainer.monitor``, a run's summary line, the
study report, the registry tags and model card, the headline metrics, the shift check) reads it.

A metric is logged as ``<prefix>_<name>``: the prefix says what was scored (``val``, ``test``, ``fold``, ``oof``,
``ensemble_test``...). ``shown`` maps each place (the constants below) to the prefixes shown there; a place that
picks its own prefix (the report's held-out set, the epoch log's ``val``, the shift check's) lists none.

Adding a metric is one :func:`register` call (or one entry in :data:`METRICS`) and its function of
:class:`Scored` (``None`` where it does not apply, e.g. melanoma metrics without a melanoma class).
"""

from __future__ import annotations

import functools
import logging
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

import numpy as np
from sklearn.metrics import f1_score

from melanoma_lab.config.checks import register_check
from melanoma_lab.evaluation.scores import (balanced_accuracy, binary_auc, expected_calibration_error,
                                            frequent_balanced_accuracy)

log = logging.getLogger(__name__)

# Places a metric is shown
EPOCH = "epoch"  # computed on validation every epoch (val_<name>); a trainer.monitor / tuner.objective
SUMMARY = "summary"  # the line a training run prints at its end; a sweep's summary table
REPORT = "report"  # the study report's results table (<held-out set>_<name>)
CROSSVAL = "crossval"  # the study report's cross-validation table
CARD = "card"  # the model card's numbers
TAGS = "tags"  # tags of a registered model version (promote)
HEADLINE = "headline"  # also logged as headline/<key>: the MLflow UI lists them together
SHIFT = "shift"  # scored under each acquisition shift (evaluation.shifts)
SHIFT_GATE = "shift_gate"  # whose worst drop per shift family is logged
INTERVAL = "interval"  # also logged with a bootstrap interval over split groups: <key>_ci_low, <key>_ci_high
REPORT_INTERVAL = "report_interval"  # the study report's held-out set: seed mean with a two-level bootstrap interval

# What a prefix names: (in words, short). Keys are listed prefix by prefix in this order.
PREFIXES = {"final_val": ("validation (final epoch)", "val"),
            "train": ("training images (one clean pass of the evaluated weights)", "train"),
            "val": ("validation", "val"),
            "fold": ("held-out fold", "fold"), "test": ("Test", "test"),
            "test_clean": ("clean-Test (no Train twin)", "clean test"), "oof": ("out-of-fold", "OOF"),
            "ensemble_calibration": ("fold ensemble, calibration slice", "ensemble calibration"),
            "ensemble_test": ("fold ensemble, Test", "ensemble test"),
            "oof_shift_worst_drop_colour": ("worst colour-shift drop", "colour drop"),
            "oof_shift_worst_drop_intensity": ("worst intensity-shift drop", "intensity drop")}
RUN_PREFIXES = ("final_val", "train", "val", "fold", "test", "test_clean")  # one run's own evaluations (not its
# parent's)
GAP_METRICS = ("accuracy", "balanced_accuracy")  # logged as train_<name> (the clean pass) and gap_key(name)
ALIASES = {"val_bacc": "val_balanced_accuracy"}  # old names still accepted for trainer.monitor / tuner.objective
INTERVAL_SUFFIXES = ("ci_low", "ci_high")  # the bounds of a key shown with an interval (INTERVAL)


@dataclass
class Scored:
    """What a metric is computed from: true labels and class probabilities, and what some metrics need besides
    (class names, the melanoma class, the alert threshold, the frequent classes)."""

    labels: np.ndarray
    probabilities: np.ndarray
    classes: list[str] | None = None
    melanoma_class: str | None = None
    alert_threshold: float | np.ndarray | None = None  # or one per image (out of fold: each fold's own; NaN: none)
    frequent: np.ndarray | None = None  # class indices with enough images (balanced_accuracy_frequent)
    calibration_bins: int = 10

    @functools.cached_property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def melanoma(self) -> int | None:
        """The melanoma class' index (None: no melanoma class)."""
        known = self.classes is not None and self.melanoma_class in self.classes
        return self.classes.index(self.melanoma_class) if known else None

    @property
    def is_melanoma(self) -> np.ndarray:
        return np.asarray(self.labels) == self.melanoma


@dataclass(frozen=True)
class Metric:
    name: str
    compute: Callable[[Scored], float | None] | None  # None: computed elsewhere, ``source`` says where
    direction: str  # max | min: which way is better (a monitor's mode)
    label: str  # in words (model card, report)
    short: str = ""  # in a table header (default: label)
    shown: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # place -> prefixes shown there
    source: str = ""

    def __post_init__(self) -> None:
        if self.direction not in ("max", "min"):
            raise ValueError(f"metric {self.name}: direction must be max or min, not {self.direction!r}")
        if self.compute is None and not self.source:
            raise ValueError(f"metric {self.name}: give the function that computes it, or its source")


def _mean_where(values: np.ndarray, where: np.ndarray) -> float:
    return float(values[where].mean()) if where.any() else float("nan")


def _melanoma(compute: Callable[[Scored, int], float]) -> Callable[[Scored], float | None]:
    """A melanoma metric: None without a melanoma class."""
    return lambda s: None if s.melanoma is None else compute(s, s.melanoma)


def _alert(compute: Callable[[Scored, np.ndarray], float]) -> Callable[[Scored], float | None]:
    """An alert metric (alerts: p(melanoma) >= the alert threshold): None without a threshold."""
    return _melanoma(lambda s, mel: None if s.alert_threshold is None else
                     compute(s, s.probabilities[:, mel] >= s.alert_threshold))


def _macro_roc_auc(s: Scored) -> float:
    aucs = np.array([binary_auc(s.labels == c, s.probabilities[:, c]) for c in range(s.probabilities.shape[1])])
    return float(np.nanmean(aucs)) if np.isfinite(aucs).any() else float("nan")


def _macro_f1(s: Scored) -> float:
    return float(f1_score(s.labels, s.predicted, labels=np.unique(s.labels), average="macro", zero_division=0))


_ENSEMBLE = ("ensemble_calibration", "ensemble_test")  # the served ensemble's own alert: where chosen, and on Test
_ALERT_SHOWN = {HEADLINE: ("val", "test", "oof", *_ENSEMBLE), CARD: ("test", "oof", *_ENSEMBLE),
                TAGS: ("oof", *_ENSEMBLE), SUMMARY: ("oof", *_ENSEMBLE), CROSSVAL: ("oof", *_ENSEMBLE),
                INTERVAL: _ENSEMBLE, SHIFT: (), REPORT_INTERVAL: ()}
METRICS: dict[str, Metric] = {m.name: m for m in [
    Metric("loss", None, "min", "loss", shown={EPOCH: ()},
           source="the compiled loss on the validation images, per epoch (training.fit.ValidationMetrics)"),
    Metric("accuracy", lambda s: float((s.predicted == s.labels).mean()), "max", "accuracy",
           shown={EPOCH: (), REPORT: (), SUMMARY: ("final_val", "train"), CROSSVAL: ("final_val",)}),
    Metric("balanced_accuracy", lambda s: balanced_accuracy(s.labels, s.predicted), "max", "balanced accuracy",
           "balanced acc", shown={EPOCH: (), REPORT: (), SUMMARY: ("val", "fold", "test", "oof", "ensemble_test"),
                                  HEADLINE: ("val", "test", "test_clean", "fold", "ensemble_test"),
                                  CARD: ("val", "test", "test_clean", "ensemble_test"), TAGS: ("oof", "ensemble_test"),
                                  CROSSVAL: ("val", "fold", "oof", "ensemble_test"), INTERVAL: ("ensemble_test",)}),
    Metric("balanced_accuracy_frequent", lambda s: None if s.frequent is None else
           frequent_balanced_accuracy(s.labels, s.predicted, s.frequent), "max",
           "balanced accuracy (classes with >= evaluation.frequent_class_images images)", "balanced acc (frequent)",
           shown={SUMMARY: ("oof",), HEADLINE: ("oof",), CARD: ("oof",), SHIFT: (), SHIFT_GATE: (),
                  REPORT_INTERVAL: ()}),
    Metric("classes_scored", lambda s: int(len(np.unique(s.labels))), "max", "classes with images scored"),
    Metric("macro_f1", _macro_f1, "max", "macro F1", shown={REPORT: (), CROSSVAL: ("val",)}),
    Metric("macro_roc_auc", _macro_roc_auc, "max", "macro ROC-AUC"),
    Metric("melanoma_sensitivity", _melanoma(lambda s, mel: _mean_where(s.predicted == mel, s.is_melanoma)), "max",
           "melanoma sensitivity", shown={REPORT: (), SUMMARY: ("val",), CROSSVAL: ("val",)}),
    Metric("melanoma_specificity", _melanoma(lambda s, mel: _mean_where(s.predicted != mel, ~s.is_melanoma)), "max",
           "melanoma specificity", shown={REPORT: ()}),
    Metric("melanoma_roc_auc", _melanoma(lambda s, mel: binary_auc(s.is_melanoma, s.probabilities[:, mel])), "max",
           "melanoma ROC-AUC", shown={REPORT: (), SUMMARY: ("val", "fold", "oof", "oof_shift_worst_drop_colour",
                                                           "oof_shift_worst_drop_intensity"),
                                      HEADLINE: ("val", "test", "fold", "oof", "ensemble_test"),
                                      CARD: ("val", "test", "oof", "ensemble_test"), TAGS: ("oof", "ensemble_test"),
                                      CROSSVAL: ("val", "fold", "oof", "ensemble_test"), INTERVAL: ("ensemble_test",),
                                      SHIFT: (), SHIFT_GATE: (), REPORT_INTERVAL: ()}),
    Metric("ece", lambda s: expected_calibration_error(s.labels, s.probabilities, s.calibration_bins), "min",
           "expected calibration error", "ece", shown={REPORT: ()}),
    Metric("melanoma_alert_sensitivity", _alert(lambda s, alerts: _mean_where(alerts, s.is_melanoma)), "max",
           "alert sensitivity", shown=_ALERT_SHOWN),
    Metric("melanoma_alert_specificity", _alert(lambda s, alerts: _mean_where(~alerts, ~s.is_melanoma)), "max",
           "alert specificity", shown=_ALERT_SHOWN),
]}


def register(metric: Metric) -> Metric:
    """Add ``metric`` (after the others); its name must be new."""
    if metric.name in METRICS:
        raise ValueError(f"metric {metric.name!r} is already registered")
    METRICS[metric.name] = metric
    return metric


def unregister(name: str) -> Metric:
    """Remove the metric ``name`` (a test's own metric, say); returns it."""
    return METRICS.pop(name)


def computed() -> list[Metric]:
    """The metrics computed from labels and probabilities (:class:`Scored`), in registry order."""
    return [m for m in METRICS.values() if m.compute is not None]


def compute(scored: Scored, metrics: list[Metric] | None = None) -> dict[str, float]:
    """Every computed metric (or those of ``metrics``) that applies to ``scored``, by name."""
    values = {m.name: m.compute(scored) for m in (computed() if metrics is None else metrics) if m.compute}
    return {name: value for name, value in values.items() if value is not None}


def names(place: str) -> list[str]:
    """The metrics shown in ``place``, in registry order."""
    return [m.name for m in METRICS.values() if place in m.shown]


def _shown(place: str, prefixes: tuple[str, ...] | None) -> Iterator[tuple[str, Metric]]:
    for prefix in PREFIXES:
        if prefixes is None or prefix in prefixes:
            yield from ((prefix, m) for m in METRICS.values() if prefix in m.shown.get(place, ()))


def keys(place: str, prefixes: tuple[str, ...] | None = None) -> list[str]:
    """The ``<prefix>_<name>`` keys shown in ``place`` (only those of ``prefixes`` if given), prefix by prefix."""
    return [f"{prefix}_{m.name}" for prefix, m in _shown(place, prefixes)]


def interval_keys(key: str) -> tuple[str, str]:
    """The keys of the bounds of ``key``'s interval (a key shown in :data:`INTERVAL`)."""
    return f"{key}_{INTERVAL_SUFFIXES[0]}", f"{key}_{INTERVAL_SUFFIXES[1]}"


def interval_text(metrics: Mapping[str, float], key: str) -> str:
    """`` [low, high]`` of ``key`` where ``metrics`` hold its interval (finite bounds), else nothing."""
    low, high = (metrics.get(bound) for bound in interval_keys(key))
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        return ""
    return f" [{low:.3f}, {high:.3f}]"


def keys_with_intervals(place: str, prefixes: tuple[str, ...] | None = None) -> list[str]:
    """:func:`keys` of ``place``, then the bounds of each (whichever were logged with an interval)."""
    shown = keys(place, prefixes)
    return shown + [bound for key in shown for bound in interval_keys(key)]


def shown_with(place: str, prefix: str) -> list[Metric]:
    """The metrics shown in ``place`` under ``prefix``, in registry order."""
    return [m for m in METRICS.values() if prefix in m.shown.get(place, ())]


def labelled(place: str, short: bool = False) -> list[tuple[str, str]]:
    """(key, label) of each key of ``place``: the prefix and the metric in words (``short``: table headers)."""
    side = 1 if short else 0
    return [(f"{prefix}_{m.name}", f"{PREFIXES[prefix][side]} {(m.short or m.label) if short else m.label}")
            for prefix, m in _shown(place, None)]


def gap_key(name: str) -> str:
    """The train-validation gap of metric ``name`` (one of :data:`GAP_METRICS`): ``train_<name>`` of the clean
    pass over the original training images minus ``val_<name>`` of the final validation evaluation, both of the
    evaluated weights and views (:mod:`melanoma_lab.evaluation.fit_gap`)."""
    return f"train_val_{name}_gap"


def monitors() -> list[str]:
    """The values ``trainer.monitor`` and ``tuner.objective`` may take: ``val_<name>`` of each epoch metric."""
    return [f"val_{name}" for name in names(EPOCH)]


def monitor_key(monitor: str) -> str:
    """``monitor`` under its one name: an old alias (``val_bacc``) is accepted with a deprecation message."""
    if monitor in ALIASES:
        message = f"{monitor!r} is deprecated: say {ALIASES[monitor]!r} (the same metric's one name)"
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        log.warning("%s", message)
        return ALIASES[monitor]
    if monitor not in monitors():
        raise ValueError(f"unknown monitor {monitor!r}: one of {', '.join(monitors())}")
    return monitor


def monitored(monitor: str) -> Metric:
    """The metric a ``trainer.monitor`` / ``tuner.objective`` value names."""
    return METRICS[monitor_key(monitor).removeprefix("val_")]


def mode(monitor: str) -> str:
    """``max`` or ``min``: the direction of the monitored metric (early stopping, checkpoint, tuner)."""
    return monitored(monitor).direction


def _is_monitor(value: object) -> bool:
    return value in monitors() or value in ALIASES


for _key in ("trainer.monitor", "tuner.objective"):
    register_check(_key, _is_monitor, lambda: f"must be one of {', '.join(monitors())} (see the metric registry, "
                                             "melanoma_lab.evaluation.registry)")
