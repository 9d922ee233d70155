"""`melanoma-lab ood-check [--folds K] [--non-lesions N] [--out DIR] [key=value ...]`: how often the input check
flags real lesions and generated non-lesions on a dataset, on grouped folds of its labelled images (how:
:mod:`melanoma_lab.study.input_check`; the check: :mod:`melanoma_lab.evaluation.ood`). Test images are never read.
``--out`` writes ``ood_flag_rates.csv`` and ``ood_flag_rates.json`` there.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from melanoma_lab.data.staging import write_atomically
from melanoma_lab.evaluation.non_lesions import KINDS
from melanoma_lab.study.input_check import flag_rates


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
        table, totals = flag_rates(cfg.dataset, cfg.audit, cfg.evaluation, cfg.trainer.seed, args.folds,
                                   args.non_lesions, args.out or Path(scratch))
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
