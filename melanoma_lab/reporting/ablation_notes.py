"""What an ablation table's intervals do not cover, said beside it.

Each difference of :func:`melanoma_lab.reporting.ablation.ablation_table` has a bootstrap interval over the scored
images (their split groups): it covers which images happened to be scored, not training noise, since each arm is one
training run. The *noise floor* is the spread of repeat runs of the baseline config: on the same folds (a replicate
row), or else on other seeds of the same setup (other folds, so it also holds the variation from one split to the
next). Without either, the note says plainly that intervals cover image sampling only. A table of many intervals
also gets a multiplicity note: how many it shows, how many would exclude 0 by chance alone if no change mattered, and
the Bonferroni level at which all of them hold together.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from melanoma_lab.evaluation.bootstrap import IMAGES_ONLY

DELTAS = ("balanced_accuracy_frequent", "melanoma_roc_auc")  # the differences with intervals (ablation.paired_deltas)
SEED = 4  # the seed's place in a group key (ablation.GROUP_TAGS)
ONE_RUN = ("One run per arm: intervals cover image sampling only, not training noise (cross-validate the baseline "
           "again, e.g. with another trainer.seed, to measure it); read a difference as an effect only well outside "
           "the noise of training, which is not measured here.")


def _ranges(rows: pd.DataFrame) -> str:
    parts = []
    for name, label in zip(DELTAS, ("balanced accuracy", "melanoma AUC")):
        values = rows[name].to_numpy(dtype=float) if name in rows else np.array([])
        values = values[np.isfinite(values)]
        if len(values) > 1:
            parts.append(f"{label} {values.min():.3f}-{values.max():.3f} (range {np.ptp(values):.3f})")
    return ", ".join(parts)


def noise_floor(key: tuple, tables: dict[tuple, pd.DataFrame]) -> str:
    """The noise floor of the group ``key`` (see the module), in words."""
    table = tables[key]
    repeats = table[table["baseline_config"].astype(bool)] if "baseline_config" in table else table.iloc[:0]
    if "same_folds" in repeats:  # a repeat on other folds scored other images: its scores are not a replicate's
        repeats = repeats[repeats["same_folds"].astype(bool)]
    if len(repeats) > 1:
        return (f"Noise floor: the baseline config ran {len(repeats)} times on these folds: {_ranges(repeats)}. A "
                "difference of about that size is training noise, which the intervals (image sampling only) do not "
                "include.")
    siblings = {k: t for k, t in tables.items() if k[:SEED] + k[SEED + 1:] == key[:SEED] + key[SEED + 1:]
                and t["config"].iloc[0] == table["config"].iloc[0]}
    if len(siblings) > 1:
        rows = pd.concat([t.iloc[:1] for t in siblings.values()])
        seeds = ", ".join(sorted(k[SEED] for k in siblings))
        return (f"One run per arm on these folds. Noise floor from the baseline config on seeds {seeds} (each seed "
                f"draws its own folds, so this spread also holds split-to-split variation): {_ranges(rows)}. The "
                "intervals cover image sampling only: a difference within about that spread is not an effect.")
    return ONE_RUN


def intervals_shown(table: pd.DataFrame) -> int:
    """How many difference intervals ``table`` shows (finite bounds)."""
    return int(sum(np.isfinite(table[f"delta_{name}_low"].to_numpy(dtype=float)).sum()
                   for name in DELTAS if f"delta_{name}_low" in table))


def multiplicity(table: pd.DataFrame, confidence: float) -> str:
    """How many intervals the table shows and what that means when reading them all (empty for none)."""
    shown = intervals_shown(table)
    if not shown:
        return ""
    miss = 1 - confidence
    if shown == 1:
        return f"Multiplicity: 1 interval at {confidence:.0%}."
    return (f"Multiplicity: {shown} intervals at {confidence:.0%} each; were no change to matter, about "
            f"{shown * miss:.1f} of them would still exclude 0 by chance. For all {shown} to hold together "
            f"(Bonferroni), each would need {1 - miss / shown:.2%}: treat an interval that only just excludes 0 as "
            "a lead to re-run, not a finding.")


def resampling(table: pd.DataFrame) -> str:
    """What the table's intervals resampled, in words (``resampled`` of its rows)."""
    found = sorted({str(v) for v in table.get("resampled", pd.Series(dtype=object)).dropna()})
    if not found:
        return ""
    if found == [IMAGES_ONLY]:
        return IMAGES_ONLY
    return "; ".join(found) if len(found) > 1 else f"the {found[0]}"
