"""Value ranges that types cannot express, checked by :func:`melanoma_lab.config.schema.validate` before anything
runs: (key, is_valid, requirement). A room above config adds what it knows with :func:`register_check` (the metric
registry: the allowed ``trainer.monitor`` and ``tuner.objective``)."""

from __future__ import annotations

from typing import Any, Callable

Check = tuple[str, Callable[[Any], bool], str | Callable[[], str]]

TTA_NAMES = ("none", "flip", "dihedral", "true", "false")  # evaluation.tta / epoch_tta (inference.tta_mode)

CHECKS: list[Check] = [
    ("dataset.image_size", lambda v: v >= 8, "must be at least 8 pixels"),
    ("dataset.batch_size", lambda v: v >= 1, "must be at least 1"),
    ("dataset.val_fraction", lambda v: 0.0 < v < 1.0, "must be between 0 and 1 (exclusive)"),
    ("dataset.ram_budget_mb", lambda v: v > 0, "must be null (no limit) or a positive number of MB"),
    ("dataset.on_unreadable", lambda v: v in ("skip", "fail"), "must be 'skip' or 'fail'"),
    ("optimizer.learning_rate", lambda v: v > 0, "must be positive"),
    ("trainer.epochs", lambda v: v >= 1, "must be at least 1"),
    ("trainer.head_epochs", lambda v: v >= 0, "must not be negative (0: no head-only epochs)"),
    ("trainer.head_learning_rate", lambda v: v > 0, "must be positive"),
    ("optimizer.weight_decay", lambda v: v >= 0, "must be null (none) or not negative"),
    ("trainer.precision", lambda v: v in ("float32", "mixed_bfloat16", "mixed_float16", "auto"),
     "must be float32, mixed_bfloat16, mixed_float16 or auto"),
    ("serving.port", lambda v: 1 <= v <= 65535, "must be a TCP port (1-65535)"),
    ("serving.workers", lambda v: v >= 1, "must be at least 1"),
    ("trainer.strategy", lambda v: v in ("default", "mirrored", "multi_worker"),
     "must be default, mirrored or multi_worker"),
    ("tuner.name", lambda v: v in ("hyperband", "random", "bayesian"), "must be hyperband, random or bayesian"),
    ("tuner.max_trials", lambda v: v >= 1, "must be at least 1"),
    ("tuner.executions_per_trial", lambda v: v >= 1, "must be at least 1"),
    ("tuner.max_epochs", lambda v: v >= 1, "must be at least 1"),
    ("tuner.factor", lambda v: v >= 2, "must be at least 2"),
    ("tuner.hyperband_iterations", lambda v: v >= 1, "must be at least 1"),
    ("tuner.patience", lambda v: v >= 0, "must be null or not negative"),
    ("tuner.search_space", lambda v: len(v) >= 1, "must list at least one parameter (see conf/tuner/random.yaml)"),
    ("evaluation.fixed_specificity", lambda v: 0.0 < v < 1.0, "must be between 0 and 1"),
    ("evaluation.fixed_sensitivity", lambda v: 0.0 < v < 1.0, "must be between 0 and 1"),
    ("evaluation.calibration_bins", lambda v: v >= 2, "must be at least 2"),
    ("evaluation.ood_flag_rate", lambda v: 0.0 < v < 0.5, "must be between 0 and 0.5 (0.01: 1% of validation "
     "lesions flagged)"),
    ("evaluation.frequent_class_images", lambda v: v >= 1, "must be at least 1"),
    ("evaluation.shift_tta", lambda v: str(v).lower() in ("none", "flip", "dihedral"),
     "must be none, flip or dihedral"),
    ("evaluation.tta", lambda v: str(v).lower() in TTA_NAMES, "must be none, flip or dihedral (true/false: flip/none)"),
    ("evaluation.epoch_tta", lambda v: str(v).lower() in TTA_NAMES,
     "must be null (the views of evaluation.tta), none, flip or dihedral (true/false: flip/none)"),
    ("dataset.colour_constancy_power", lambda v: v >= 1, "must be null (off) or a p-norm of at least 1 (6: usual)"),
    ("dataset.colour_constancy_grey", lambda v: 0 < v <= 1,
     "must be null (each image keeps its own intensity) or a grey level in (0, 1] (a fraction of 255, e.g. 0.68)"),
    ("optimizer.ema_momentum", lambda v: 0.0 <= v < 1.0, "must be in [0, 1)"),
    ("study.seeds", lambda v: len(v) >= 1, "must list at least one seed"),
    ("study.cv_folds", lambda v: v >= 1, "must be at least 1 (1: one train/validation split)"),
    ("study.sweep_objective", lambda v: v in ("val", "fold"),
     "must be val (inner validation: the default) or fold (the outer folds, then scored only by Test or new folds)"),
    ("study.bootstrap_samples", lambda v: v >= 100, "must be at least 100"),
    ("study.confidence", lambda v: 0.5 <= v < 1.0, "must be in [0.5, 1)"),
    ("audit.conflict_policy", lambda v: v in ("warn", "drop", "fail"), "must be warn, drop or fail"),
    ("audit.near_duplicate_distance", lambda v: v >= 0, "must not be negative"),
    ("audit.test_contamination", lambda v: v in ("exclude", "keep"), "must be exclude or keep"),
]


def register_check(key: str, is_valid: Callable[[Any], bool], requirement: str | Callable[[], str]) -> None:
    """Check ``key`` with ``is_valid`` (replacing an earlier check of it): how a room above adds what it knows, e.g.
    :mod:`melanoma_lab.evaluation.registry` the allowed ``trainer.monitor`` and ``tuner.objective``."""
    CHECKS[:] = [check for check in CHECKS if check[0] != key] + [(key, is_valid, requirement)]
