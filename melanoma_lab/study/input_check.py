"""How often the input check (:mod:`melanoma_lab.evaluation.ood`) flags real lesions and generated non-lesions on
a dataset's labelled images: ``melanoma-lab ood-check`` (:mod:`melanoma_lab.cli.ood_check`).

The labelled (Train) images are audited and grouped like a run's (copies and near-copies together) and cut into K
stratified, grouped folds. For each fold the check is fitted on the other folds' training part, its threshold
chosen on their validation part (``dataset.val_fraction``, grouped, with ``evaluation.ood_flag_rate``), then scored
on the held-out fold and on generated non-lesion pictures (:mod:`melanoma_lab.evaluation.non_lesions`). Test images
are never read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from melanoma_lab.data.pipeline import decode
from melanoma_lab.data.split import fold_split, train_val_split
from melanoma_lab.errors import UserError
from melanoma_lab.evaluation.image_statistics import image_statistics
from melanoma_lab.evaluation.non_lesions import KINDS, non_lesions
from melanoma_lab.evaluation.ood import InputCheck
from melanoma_lab.study.preparation import load_audited_data, preprocessed


def _statistics_of(files: pd.DataFrame, classes: list[str], dataset) -> pd.Series:
    """Image statistics per path, of the images as a model sees them (decoded, resized, colour-corrected)."""
    decoded = preprocessed(decode(files, classes, dataset.image_size), dataset)
    statistics = image_statistics(decoded.images)
    return pd.Series(list(statistics), index=decoded.files["path"].to_numpy())


def flag_rates(dataset: DictConfig, audit: DictConfig, evaluation: DictConfig, seed: int, folds: int, count: int,
               out: Path) -> tuple[pd.DataFrame, dict]:
    """One row per fold (lesions and non-lesions flagged, the threshold) and the totals; ``out`` gets the audit."""
    audited = load_audited_data(dataset, audit, out)
    labelled = audited.files[audited.files["split"] == "train"].reset_index(drop=True)
    if labelled["group"].nunique() < folds * 2:
        raise UserError(f"{len(labelled)} labelled images are too few for --folds {folds}")
    statistics = _statistics_of(labelled, audited.catalog.classes, dataset)
    pictures, kinds = non_lesions(count, dataset.image_size, seed=seed)
    generated = image_statistics(pictures)
    rows = []
    for fold in range(folds):
        rest, held_out = fold_split(labelled, folds, fold, seed)
        train, validation = train_val_split(rest, dataset.val_fraction, seed)
        stats = [np.stack(statistics.reindex(part["path"]).dropna().to_list())
                 for part in (train, validation, held_out)]
        check = InputCheck.of_statistics(stats[0], stats[1], evaluation.ood_flag_rate)
        flagged = check.distances(generated) > check.threshold
        rows.append({"fold": fold + 1, "train": len(stats[0]), "validation": len(stats[1]), "held_out": len(stats[2]),
                     "threshold": check.threshold, "validation_flagged": check.validation_rate,
                     "held_out_flagged": float(np.mean(check.distances(stats[2]) > check.threshold)),
                     "non_lesions_flagged": float(flagged.mean()),
                     **{f"{kind}_flagged": float(flagged[np.array(kinds) == kind].mean()) for kind in KINDS}})
    table = pd.DataFrame(rows)
    held_out_images = int(table["held_out"].sum())
    lesions_flagged = (table["held_out_flagged"] * table["held_out"]).sum() / held_out_images
    totals = {"dataset": dataset.name, "root": str(dataset.root), "folds": folds,
              "target_flag_rate": evaluation.ood_flag_rate, "lesions": held_out_images,
              "lesions_flagged_held_out": float(lesions_flagged),
              "lesions_flagged_validation": float(table["validation_flagged"].mean()),
              "non_lesions": count, "non_lesions_flagged": float(table["non_lesions_flagged"].mean()),
              "non_lesions_flagged_worst_fold": float(table["non_lesions_flagged"].min())}
    return table, totals
