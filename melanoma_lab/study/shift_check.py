"""The shift check of a cross-validation: every fold model scores its own out-of-fold images again under each
acquisition shift of ``evaluation.shifts`` (:mod:`melanoma_lab.evaluation.shifts`), each image at its own fold's alert
threshold, and the parent run gets the out-of-fold headline metrics per shift and their worst drop per family
(``oof_shift_<shift>_<metric>``, ``oof_shift_worst_drop_<family>_<metric>``, ``evaluation/oof_shift_check.csv``
and ``.md``). A CV with ``study.shift_check=true`` (the default) runs it at its end; for a CV parent logged
before, or with other shifts::

    melanoma-lab shift-check --run <CV parent run id> [key=value ...]
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from typing import Callable

import numpy as np
import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from melanoma_lab.study.oof import oof_metrics
from melanoma_lab.reporting.selection import OOF_FILE
from melanoma_lab.evaluation import registry
from melanoma_lab.evaluation.shifts import Shift, build_shifts, render, shift_metrics, shift_table

log = logging.getLogger(__name__)
TABLE = "evaluation/oof_shift_check"
BASE_IDENTITY = ("config_hash", "data_fingerprint", "code_version", "model_weights_sha256")


def oof_shift_table(oof: pd.DataFrame, fold_models: dict[int, str], classes: list[str], evaluation: DictConfig,
                    melanoma_class: str) -> pd.DataFrame:
    """The shift table (:func:`melanoma_lab.evaluation.shifts.shift_table`) of out-of-fold predictions ``oof`` whose fold
    ``k`` model is the logged model at ``fold_models[k]`` (a model URI), with ``evaluation.shift_tta`` views."""
    from melanoma_lab.data.pipeline import decode
    from melanoma_lab.serving.predict import load_model

    missing = sorted(set(oof["fold"]) - set(fold_models))
    if missing:
        raise LookupError(f"no logged model for fold(s) {missing}: the shift check needs every fold's model "
                          "(tracking.log_model=true)")
    parts = []
    for fold, rows in oof.groupby("fold"):
        loaded = load_model(fold_models[int(fold)])
        settings = dataclasses.replace(loaded.settings, tta=evaluation.get("shift_tta", "none"))
        files = pd.DataFrame({"path": rows["path"], "label": [classes[i] for i in rows["label"]]})
        decoded = decode(files, classes, settings.image_size)
        if decoded.failures:
            raise OSError(f"fold {fold}: {len(decoded.failures)} out-of-fold images can no longer be read "
                          f"(e.g. {next(iter(decoded.failures))}): was the dataset moved?")
        parts.append((rows.index.to_numpy(), loaded.model, settings, np.asarray(decoded.images)))

    def predict(shift: Shift | None) -> np.ndarray:
        probabilities = np.empty((len(oof), len(classes)))
        for index, model, settings, images in parts:
            probabilities[index] = settings.probabilities(model, list(images if shift is None else shift(images)))
        return probabilities

    def score(probabilities: np.ndarray) -> dict[str, float]:
        table = oof.assign(**{f"p_{c}": probabilities[:, i] for i, c in enumerate(classes)})
        metrics = oof_metrics(table, classes, evaluation, melanoma_class)
        return {name: metrics.get(f"oof_{name}", float("nan")) for name in registry.names(registry.SHIFT)}

    return shift_table(predict, score, build_shifts(evaluation.get("shifts")))


def log_shift_check(table: pd.DataFrame, log_metrics: Callable[[dict], None], log_table: Callable, log_text: Callable
                    ) -> dict[str, float]:
    metrics = shift_metrics(table, "oof_")
    log_metrics(metrics)
    log_table(table, f"{TABLE}.csv")
    log_text(render(table), f"{TABLE}.md")
    return metrics


def fold_runs(client: MlflowClient, parent: Run) -> dict[int, Run]:
    """The FINISHED fold runs a CV parent used (its children, or folds reused from another parent): same config,
    data, code and weights, ``run_kind=fold``, same nesting; the newest of each fold."""
    tags = parent.data.tags
    query = ["attributes.status = 'FINISHED'", "tags.run_kind = 'fold'", f"tags.nested = '{tags.get('nested')}'"]
    query += [f"tags.{key} = '{tags[key]}'" for key in BASE_IDENTITY if key in tags]
    runs = client.search_runs([parent.info.experiment_id], " and ".join(query), order_by=["attributes.start_time DESC"],
                              max_results=1000)
    found: dict[int, Run] = {}
    for run in runs:
        number, _, folds = run.data.tags.get("fold", "").partition("/")
        if folds == tags.get("cv_folds") and number.isdigit():
            found.setdefault(int(number), run)
    return found


def check_logged_cv(client: MlflowClient, run_id: str, evaluation: DictConfig, melanoma_class: str) -> pd.DataFrame:
    """The shift check of the logged CV parent ``run_id``, logged onto it; returns its table."""
    parent = client.get_run(run_id)
    if "cv_folds" not in parent.data.tags or "fold" in parent.data.tags:
        raise LookupError(f"run {run_id} is no cross-validation parent (python -m melanoma_lab ... study.cv_folds=K)")
    with tempfile.TemporaryDirectory() as scratch:
        oof = pd.read_csv(client.download_artifacts(run_id, OOF_FILE, scratch))
    classes = [c[2:] for c in oof.columns if c.startswith("p_")]
    models = {fold: f"runs:/{run.info.run_id}/model" for fold, run in fold_runs(client, parent).items()}
    table = oof_shift_table(oof, models, classes, evaluation, melanoma_class)

    def log_table(frame: pd.DataFrame, path: str) -> None:
        client.log_text(run_id, frame.to_csv(index=False), path)

    log_shift_check(table, lambda m: [client.log_metric(run_id, k, v) for k, v in m.items()], log_table,
                    lambda text, path: client.log_text(run_id, text, path))
    return table
