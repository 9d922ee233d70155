"""Selection on the scored data: which held-out images informed a recipe decision, and the scores without them.

A recipe decided on some runs' out-of-fold images (an ablation on fold 1 of seed 1, say) and then scored on out of
fold predictions that include those images is scored partly on the data that chose it: that part is optimistic. The
runs a decision was read from carry the tag ``informed_decision`` (what was decided; ``melanoma-lab ablation
--record-decision TEXT`` tags the runs of the tables it writes, or set it by hand in the MLflow UI). Their
out-of-fold images are the *decision images*, matched by path, so a run of the final recipe on the same folds (the
same fold runs reused, by design) and one on other folds of another seed alike lose exactly those images: the report
gives each run's out-of-fold scores with and without them (:func:`selection_table`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from melanoma_lab.evaluation.scores import binary_auc
from melanoma_lab.reporting.selection import DECISION_COLUMNS, DECISION_TAG, Study
from melanoma_lab.reporting.statistics import fixed_class_score, probabilities

SEPARATOR = "; "
NOTE = ("Decision images: the out-of-fold images of runs tagged `informed_decision` (a recipe was chosen on their "
        "scores; `melanoma-lab ablation --record-decision TEXT` tags the runs it compares). Scores on them are "
        "optimistic for the recipe chosen there; 'without' leaves them out (same frequent classes, fixed on all "
        "of the run's images).")
NONE_NOTE = ("No run of this study is tagged `informed_decision`: if a recipe was chosen on some of these "
             "out-of-fold images (an ablation on one fold), the numbers above include the images that chose it and "
             "are optimistic; tag those runs (`melanoma-lab ablation ... --record-decision TEXT`).")


TITLE = "Selection on the scored data (out of fold, with and without the images that informed a recipe decision)"


def selection_note(study: Study) -> str:
    """What the selection table means, or that no decision was recorded (the numbers may then be optimistic)."""
    return NOTE if study.decisions is not None and len(study.decisions) else NONE_NOTE


def record_decision(client: MlflowClient, run_ids: list[str], text: str) -> list[str]:
    """Tag each run with ``informed_decision`` = ``text`` (added to a decision it already records); returns the
    run ids whose tag changed."""
    changed = []
    for run_id in dict.fromkeys(run_ids):
        before = client.get_run(run_id).data.tags.get(DECISION_TAG, "")
        if text in before.split(SEPARATOR):
            continue
        client.set_tag(run_id, DECISION_TAG, SEPARATOR.join(filter(None, [before, text])))
        changed.append(run_id)
    return changed


def _scores(table: pd.DataFrame, score, melanoma: int | None) -> tuple[float, float]:
    if not len(table):
        return float("nan"), float("nan")
    labels, probs = table["label"].to_numpy(), probabilities(table)
    auc = float("nan") if melanoma is None else binary_auc(labels == melanoma, probs[:, melanoma])
    return score(labels, probs.argmax(axis=1)), auc


def _text(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.3f}"


def selection_table(study: Study) -> pd.DataFrame:
    """Per run of a cross-validated study: how many of its out-of-fold images informed a decision (in which of its
    folds, and which decision), and its balanced accuracy over the frequent classes and melanoma AUC with and
    without them."""
    rows, decisions = [], study.decisions if study.decisions is not None else pd.DataFrame(columns=DECISION_COLUMNS)
    for run in study.runs:
        oof = run.predictions.get("oof")
        if oof is None:
            continue
        used = oof["path"].isin(set(decisions["path"]))
        score = fixed_class_score(oof["label"].to_numpy(), study.frequent_class_images)
        (bacc, auc), (bacc_out, auc_out) = (_scores(part, score, study.melanoma_index) for part in (oof, oof[~used]))
        folds = sorted(oof.loc[used, "fold"].unique()) if "fold" in oof else []
        texts = decisions.loc[decisions["path"].isin(set(oof.loc[used, "path"])), "decision"]
        rows.append({"experiment": run.experiment, "seed": run.seed, "oof images": len(oof),
                     "decision images": int(used.sum()),
                     "their folds": ", ".join(map(str, folds)) or "none",
                     "decisions": SEPARATOR.join(dict.fromkeys(texts)) or "none",
                     f"bal. acc. (classes >= {study.frequent_class_images} images)": _text(bacc),
                     "without decision images": _text(bacc_out),
                     "melanoma AUC": _text(auc), "melanoma AUC without": _text(auc_out)})
    return pd.DataFrame(rows)
