"""How ``promote --study`` chose its run, and which of the winner's numbers are on data that did not choose it.

The run with the highest ``--metric`` among several is picked *because* that value is high: part of it is luck on
those images (the winner's curse), so it is optimistic as an estimate of the model. The numbers the run logged on
other images (Test after a pick by validation, the outer folds after a pick by inner validation, the ensemble's
Test after a pick by out-of-fold scores) are not: :func:`selection_tags` names them, or says plainly that there are
none. Images are the same when the prefixes are: validation and its final epoch; Test, clean Test and the ensemble's
Test; a fold run's outer fold and the out-of-fold predictions pooled from the outer folds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from melanoma_lab.evaluation import registry

SAME_IMAGES = ({"val", "final_val"}, {"test", "test_clean", "ensemble_test"}, {"fold", "oof"},
               {"ensemble_calibration"})
MEAN = "cv_mean_"  # a cross-validation parent's mean over folds: the folds' own split


@dataclass(frozen=True)
class Selection:
    """``run_id`` had the highest ``metric`` (``value``) of ``candidates`` runs of ``study``."""

    run_id: str
    study: str
    metric: str
    value: float
    candidates: int

    @property
    def split(self) -> str:
        """The prefix of :attr:`metric` (``val`` for ``val_balanced_accuracy``), longest first."""
        key = self.metric.removeprefix(MEAN)
        return max((p for p in registry.PREFIXES if key.startswith(f"{p}_")), key=len, default=key)

    def chose_with(self, key: str) -> bool:
        """Whether ``key`` was measured on the images the pick was made on."""
        prefix = max((p for p in registry.PREFIXES if key.removeprefix(MEAN).startswith(f"{p}_")), key=len,
                     default="")
        return any({self.split, prefix} <= group for group in SAME_IMAGES) or prefix == self.split


def independent_scores(selection: Selection, metrics: Mapping[str, float]) -> dict[str, float]:
    """The winner's shown numbers (headline, model card, registry tags) on images that did not choose it."""
    shown = dict.fromkeys([*registry.keys(registry.HEADLINE), *registry.keys(registry.CARD),
                           *registry.keys(registry.TAGS)])
    return {key: metrics[key] for key in shown if key in metrics and not selection.chose_with(key)}


def selection_tags(selection: Selection, metrics: Mapping[str, float]) -> dict[str, str]:
    """Registry tags: how the run was picked, that the value it was picked by is optimistic (with more than one
    candidate), and its numbers on data not used to pick it (or that there are none)."""
    independent = independent_scores(selection, metrics)
    optimistic = (f"optimistic: the highest of {selection.candidates} runs' {selection.metric}, the value it was "
                  "picked by (winner's curse); not an estimate of how it does on new images"
                  if selection.candidates > 1 else "the only candidate: no pick among runs")
    return {"selected_by": f"highest {selection.metric} of {selection.candidates} FINISHED runs of study "
                           f"{selection.study} with a logged model",
            "selected_among": str(selection.candidates), "selection_score": f"{selection.value:.4f}",
            "selection_score_is": optimistic,
            "independent_scores": ", ".join(f"{k}={v:.3f}" for k, v in independent.items()) or (
                f"none: every number this run logged is on the images it was picked by ({selection.split}); "
                "expect lower on new images")}


def selection_lines(selection: Selection, metrics: Mapping[str, float]) -> list[str]:
    """The model card's section on how the run was chosen."""
    tags = selection_tags(selection, metrics)
    independent = independent_scores(selection, metrics)
    lines = ["", "## How it was chosen", "",
             f"Picked as the {tags['selected_by']}: {selection.metric} = {selection.value:.3f}, "
             f"{tags['selection_score_is']}."]
    if independent:
        labels = dict(registry.labelled(registry.HEADLINE) + registry.labelled(registry.CARD)
                      + registry.labelled(registry.TAGS))
        lines.append("Its numbers on images that did not choose it: "
                     + ", ".join(f"{labels.get(k, k)} {v:.3f}" for k, v in independent.items()) + ".")
    else:
        lines.append(f"No number of this run is on images that did not choose it ({tags['independent_scores']}).")
    return lines
