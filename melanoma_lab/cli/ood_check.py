"""`melanoma-lab ood-check [--folds K] [--non-lesions N] [--out DIR] [key=value ...]`: how often the input check
flags real lesions and generated non-lesions on a dataset (:mod:`melanoma_lab.evaluation.ood`).

The dataset's labelled (Train) images are audited and grouped like a run's (copies and near-copies together) and
cut into K stratified, grouped folds. For each fold the check is fitted on the other folds' training part, its
threshold chosen on their validation part (``dataset.val_fraction``, grouped: as a nested cross-validation run
chooses it, with ``evaluation.ood_flag_rate``), then scored on the held-out fold (lesions it neither fitted nor
was calibrated on) and on N generated non-lesion pictures (:mod:`melanoma_lab.evaluation.non_lesions`: blank,
solid colours, noise, text, gradients, patterns, clouds; half palette GIFs). Test images are never read. ``--out``
writes ``ood_flag_rates.csv`` and ``ood_flag_rates.json`` there.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from melanoma_lab.data.pipeline import decode
from melanoma_lab.data.split import fold_split, train_val_split
from melanoma_lab.data.staging import write_atomically
from melanoma_lab.errors import UserError
from melanoma_lab.evaluation.image_statistics import image_statistics
from melanoma_lab.evaluation.inference import preprocess
from melanoma_lab.evaluation.non_lesions import KINDS, non_lesions
from melanoma_lab.evaluation.ood import InputCheck


def _statistics_of(files: pd.DataFrame, classes: list[str], dataset) -> pd.Series:
    """Image statistics per path, of the images as a model sees them (decoded, resized, colour-corrected)."""
    decoded = decode(files, classes, dataset.image_size)
    statistics = image_statistics(preprocess(decoded.images, dataset.get("colour_constancy_power")))
    return pd.Series(list(statistics), index=decoded.files["path"].to_numpy())


def flag_rates(cfg, folds: int, count: int, out: Path) -> tuple[pd.DataFrame, dict]:
    """One row per fold (lesions and non-lesions flagged, the threshold) and the totals."""
    from melanoma_lab.study.preparation import load_audited_data

    audited = load_audited_data(cfg.dataset, cfg.audit, out)
    labelled = audited.files[audited.files["split"] == "train"].reset_index(drop=True)
    if labelled["group"].nunique() < folds * 2:
        raise UserError(f"{len(labelled)} labelled images are too few for --folds {folds}")
    statistics = _statistics_of(labelled, audited.catalog.classes, cfg.dataset)
    pictures, kinds = non_lesions(count, cfg.dataset.image_size, seed=cfg.trainer.seed)
    generated = image_statistics(pictures)
    rows = []
    for fold in range(folds):
        rest, held_out = fold_split(labelled, folds, fold, cfg.trainer.seed)
        train, validation = train_val_split(rest, cfg.dataset.val_fraction, cfg.trainer.seed)
        stats = [np.stack(statistics.reindex(part["path"]).dropna().to_list())
                 for part in (train, validation, held_out)]
        check = InputCheck.of_statistics(stats[0], stats[1], cfg.evaluation.ood_flag_rate)
        flagged = check.distances(generated) > check.threshold
        rows.append({"fold": fold + 1, "train": len(stats[0]), "validation": len(stats[1]), "held_out": len(stats[2]),
                     "threshold": check.threshold, "validation_flagged": check.validation_rate,
                     "held_out_flagged": float(np.mean(check.distances(stats[2]) > check.threshold)),
                     "non_lesions_flagged": float(flagged.mean()),
                     **{f"{kind}_flagged": float(flagged[np.array(kinds) == kind].mean()) for kind in KINDS}})
    table = pd.DataFrame(rows)
    held_out_images = int(table["held_out"].sum())
    lesions_flagged = (table["held_out_flagged"] * table["held_out"]).sum() / held_out_images
    totals = {"dataset": cfg.dataset.name, "root": str(cfg.dataset.root), "folds": folds,
              "target_flag_rate": cfg.evaluation.ood_flag_rate, "lesions": held_out_images,
              "lesions_flagged_held_out": float(lesions_flagged),
              "lesions_flagged_validation": float(table["validation_flagged"].mean()),
              "non_lesions": count, "non_lesions_flagged": float(table["non_lesions_flagged"].mean()),
              "non_lesions_flagged_worst_fold": float(table["non_lesions_flagged"].min())}
    return table, totals


def main(argv: list[str] | None = None) -> int:
    from melanoma_lab.config.arguments import parse_with_config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", type=int, default=5, help="grouped folds, each held out once (default 5)")
    parser.add_argument("--non-lesions", type=int, default=700, help="generated non-lesion pictures (default 700)")
    parser.add_argument("--out", type=Path, help="folder for ood_flag_rates.csv and .json")
    args, cfg = parse_with_config(parser, argv)
    if args.folds < 2 or args.non_lesions < len(KINDS):
        parser.error(f"--folds must be at least 2 and --non-lesions at least {len(KINDS)}")
    with tempfile.TemporaryDirectory() as scratch:  # the audit's report, unless --out keeps it
        table, totals = flag_rates(cfg, args.folds, args.non_lesions, args.out or Path(scratch))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"\nreal lesions flagged: {totals['lesions_flagged_held_out']:.2%} of {totals['lesions']} held-out images "
          f"(validation, where the threshold was chosen: {totals['lesions_flagged_validation']:.2%}); generated "
          f"non-lesions flagged: {totals['non_lesions_flagged']:.2%} of {totals['non_lesions']} (worst fold "
          f"{totals['non_lesions_flagged_worst_fold']:.2%})")
    if args.out:
        write_atomically(args.out / "ood_flag_rates.csv", table.to_csv(index=False))
        write_atomically(args.out / "ood_flag_rates.json", json.dumps(totals, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
