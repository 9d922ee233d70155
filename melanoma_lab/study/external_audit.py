"""An external evaluation's images audited against the images its model was developed on.

ISIC archive sets overlap, so an external set can hold the source model's own training images (the same bytes, a
re-encoded near-copy, or a rotated or flipped copy). :func:`training_overlap` reads the training fingerprints
(:data:`melanoma_lab.data.overlap.FINGERPRINTS`) that the source run and the runs under it (the folds of a fold
ensemble) logged, and matches the scored images against them (:func:`melanoma_lab.data.overlap.training_matches`,
at each run's ``audit.near_duplicate_distance``). The evaluation then logs its full metrics (``eval_*``), the clean
ones on the images that are no such copy (``eval_clean_*``, ``eval_clean_images``), ``eval_training_overlap_images``,
and the pairs (``evaluation/eval_training_overlap.csv``, tag ``training_overlap``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from melanoma_lab.data.contamination import TWIN_COLUMN, clean_test_metrics
from melanoma_lab.data.overlap import FINGERPRINTS, MATCH_COLUMNS, overlapping, training_matches

log = logging.getLogger(__name__)
DISTANCE_PARAM = "audit.near_duplicate_distance"
TABLE = "evaluation/eval_training_overlap.csv"


@dataclass
class TrainingOverlap:
    """The scored images' matches with the source's development images; ``note``: how it was checked (the tag
    ``training_overlap``: ``checked`` or why not)."""

    matches: pd.DataFrame
    note: str

    @property
    def checked(self) -> bool:
        return self.note == "checked"


def source_fingerprints(tracking_uri: str, run_id: str | None) -> list[tuple[pd.DataFrame, int]]:
    """(fingerprints, near-copy distance) of each run, ``run_id`` or nested under it, that logged them."""
    import mlflow
    from mlflow.exceptions import MlflowException

    if not run_id:
        return []
    client = mlflow.tracking.MlflowClient(tracking_uri)
    try:
        queue = [client.get_run(run_id)]
    except MlflowException:
        return []  # a model whose run is not in this store
    found = []
    while queue:
        run = queue.pop()
        queue += client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
        try:
            table = pd.read_csv(client.download_artifacts(run.info.run_id, FINGERPRINTS), dtype=str,
                                keep_default_na=False)
        except (MlflowException, OSError):
            continue  # a run that trained nothing (a CV parent), or one logged before fingerprints were
        found.append((table, int(run.data.params[DISTANCE_PARAM])))  # every training run logs its audit settings
    return found


def training_overlap(tracking_uri: str, run_id: str | None, files: pd.DataFrame) -> TrainingOverlap:
    """The matches of ``files`` with the development images of the source run ``run_id`` (and its nested runs)."""
    sources = source_fingerprints(tracking_uri, run_id)
    if not sources:
        note = ("not checked: the model has no source run" if not run_id else
                f"not checked: run {run_id} (and the runs under it) logged no {FINGERPRINTS}")
        log.warning("the scored images were not audited against the model's training images (%s): eval_* may "
                    "include images it trained on", note)
        return TrainingOverlap(pd.DataFrame(columns=MATCH_COLUMNS), note)
    matches = pd.concat([training_matches(files, table, distance) for table, distance in sources], ignore_index=True)
    matches = matches.drop_duplicates(["path", "training_path", "match"]).reset_index(drop=True)
    copies = int(overlapping(files, matches).sum())
    if copies:
        log.warning("%d of the %d scored images are copies of images the source model was developed on (%s): "
                    "eval_clean_* leave them out (%s)", copies, len(files),
                    ", ".join(f"{n} {kind}" for kind, n in matches.groupby("match")["path"].nunique().items()), TABLE)
    unconfirmed = matches["match"].eq("rotated_unconfirmed")
    if unconfirmed.any():
        log.warning("%d rotated-hash matches with training images that are no longer on disk could not be checked "
                    "and are not counted (%s)", int(unconfirmed.sum()), TABLE)
    return TrainingOverlap(matches, "checked")


def marked(files: pd.DataFrame, overlap: TrainingOverlap) -> pd.DataFrame:
    """``files`` with the ``train_twin`` column: the image is a copy of a development image of the source model."""
    return files.assign(**{TWIN_COLUMN: overlapping(files, overlap.matches)})


def clean_metrics(overlap: TrainingOverlap, files: pd.DataFrame, labels: np.ndarray, probabilities: np.ndarray,
                  score: Callable[[np.ndarray, np.ndarray], Any]) -> dict[str, float]:
    """``eval_training_overlap_images``, ``eval_clean_images`` and ``eval_clean_<metric>`` (nothing when the
    overlap was not checked)."""
    if not overlap.checked:
        return {}
    clean = clean_test_metrics(marked(files, overlap), labels, probabilities, score)
    return {"eval_training_overlap_images": len(labels) - clean["test_clean_images"],
            **{"eval_clean_" + key.removeprefix("test_clean_"): value for key, value in clean.items()}}
