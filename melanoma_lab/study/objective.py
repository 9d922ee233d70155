"""The number a Hydra sweeper (Optuna, Ax, Nevergrad...) optimises: what ``melanoma_lab.cli.train.train`` returns.

A sweep picks the config with the best objective, so the objective's images are used to choose: they can no longer
score the choice without bias. By default (``study.sweep_objective=val``) it is therefore the *validation* number,
in nested cross-validation the inner validation split of each fold (the mean over folds, ``cv_mean_val_*``), never
the outer folds that the out-of-fold headline is computed on. ``study.sweep_objective=fold`` optimises the outer
folds' mean instead (less noisy; then only a Test split or fresh folds of another seed score the winner without
bias). The score is the balanced accuracy over the fixed set of frequent classes
(``<split>_balanced_accuracy_frequent``, classes with at least ``evaluation.frequent_class_images`` images) where a
run logged it, else the balanced accuracy over the classes present.
"""

from __future__ import annotations

from collections.abc import Mapping

from melanoma_lab.evaluation import registry

SPLITS = ("val", "fold")  # study.sweep_objective: inner validation (default) | outer held-out fold
SCORES = ("balanced_accuracy_frequent", "balanced_accuracy")  # preferred first; names of the metric registry
assert all(name in registry.METRICS for name in SCORES)


def objective_keys(split: str, cross_validated: bool) -> list[str]:
    """The keys the objective is read from, preferred first: ``split`` (``val`` or ``fold``), and with ``fold``
    ``val`` after it (a run without an outer fold: not nested, where validation *is* the scored fold)."""
    prefix = "cv_mean_" if cross_validated else ""
    splits = [split] + (["val"] if split != "val" else [])
    return [f"{prefix}{part}_{name}" for part in splits for name in SCORES]


def sweep_objective(results: Mapping[str, float], split: str, cross_validated: bool) -> float | None:
    """The sweepers' objective among ``results`` (None: the run logged none of :func:`objective_keys`)."""
    return next((float(results[key]) for key in objective_keys(split, cross_validated) if key in results), None)
