"""Which MLflow runs a study report uses, and loading them.

Only runs that ``melanoma-lab study`` launched count (tag ``launched_by=study``; a rerun that
reuses a FINISHED run of an earlier study invocation still counts). Of those, one run per (experiment,
seed): among runs with the same config and code version the newest FINISHED one is kept (the others are
*duplicates*); when an (experiment, seed) ran under several configs or code versions, the newest run wins
and the others are *superseded*. Every run left out is listed with the reason. Runs logged into the same
MLflow experiment by hand (no ``launched_by`` tag) are ignored, unless a study asked for exactly such a run (same
config, data and code) and adopted it instead of training it again (tag ``adopted_by_study``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

RUNTIME_TAGS = ("code_version", "runtime.device", "runtime.cpu_cores", "runtime.keras_backend", "runtime.precision")
OOF_FILE = "oof_predictions.csv"  # a cross-validation parent's out-of-fold predictions (melanoma_lab.study.oof)
DECISION_TAG = "informed_decision"  # a run whose out-of-fold scores a recipe decision was read from
DECISION_COLUMNS = ["path", "decision", "run_id"]
HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds")


@dataclass
class StudyRun:
    run_id: str
    experiment: str
    seed: int
    params: dict[str, str]
    metrics: dict[str, float]
    history: dict[str, list[float]]
    predictions: dict[str, pd.DataFrame]  # split -> path, label, p_<class>... (train_twin when logged)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class Study:
    name: str
    runs: list[StudyRun]
    classes: list[str]
    audit: dict | None
    held_out: str  # "test" when the dataset has a Test split, else "val"; "oof": a cross-validated study (every
    #                Train image once, predicted by the fold model that never saw it)
    cross_validation: pd.DataFrame  # one row per cross-validation parent run (cv_mean_/cv_sd_ metrics)
    dropped: pd.DataFrame = field(default_factory=pd.DataFrame)  # run_id, experiment, seed, reason
    melanoma_class: str | None = None  # the dataset's melanoma label (param dataset.melanoma_class of the runs)
    frequent_class_images: int = 10  # intervals and verdicts: balanced accuracy over classes with this many images
    decisions: pd.DataFrame | None = None  # images that informed a recipe decision (reporting.decisions)

    @property
    def melanoma_index(self) -> int | None:
        """Column of the melanoma class in the predictions (None: the classes have no melanoma class)."""
        return self.classes.index(self.melanoma_class) if self.melanoma_class in self.classes else None

    @property
    def experiments(self) -> list[str]:
        """Experiment names in the order the study ran them."""
        return list(dict.fromkeys(r.experiment for r in self.runs))

    def of(self, experiment: str) -> list[StudyRun]:
        return sorted((r for r in self.runs if r.experiment == experiment), key=lambda r: r.seed)

    def runtime(self) -> dict[str, str]:
        """Distinct values of each runtime tag over the study's runs ("not logged" where no run has it)."""
        out = {}
        for tag in RUNTIME_TAGS:
            values = sorted({r.tags[tag] for r in self.runs if r.tags.get(tag)})
            missing = sum(1 for r in self.runs if not r.tags.get(tag))
            text = ", ".join(values) or "not logged"
            out[tag] = text + (f" (not logged by {missing} runs)" if values and missing else "")
        return out


def _key(run: Run, *tags: str) -> tuple:
    return tuple(run.data.tags.get(t, "") for t in tags)


def study_time(run: Run) -> int:
    """When the study took the run: its start, or when it adopted a run made by hand (ms since the epoch)."""
    return int(run.data.tags.get("adopted_at_ms") or run.info.start_time or 0)


def select_runs(runs: list[Run]) -> tuple[list[Run], list[dict]]:
    """The study-launched, FINISHED runs the report uses (one per experiment and seed), and every other
    study-launched run with why it was left out. Runs without ``launched_by=study`` are neither."""
    kept, dropped = {}, []

    def drop(run: Run, reason: str) -> None:
        dropped.append({"run_id": run.info.run_id, "experiment": run.data.tags.get("experiment", ""),
                        "seed": run.data.tags.get("seed", ""), "reason": reason})

    launched = [r for r in runs if r.data.tags.get("launched_by") == "study" and "fold" not in r.data.tags]
    for run in sorted(launched, key=study_time, reverse=True):  # newest first
        if run.info.status != "FINISHED":
            drop(run, f"status {run.info.status}")
            continue
        key = _key(run, "experiment", "seed", "cv_folds")
        winner = kept.setdefault(key, run)
        if winner is run:
            continue
        same = _key(run, "config_hash", "code_version") == _key(winner, "config_hash", "code_version")
        drop(run, f"duplicate of newer run {winner.info.run_id} (same config and code version)" if same else
             f"superseded by newer run {winner.info.run_id} (config {winner.data.tags.get('config_hash', '?')}, "
             f"code {winner.data.tags.get('code_version', 'not logged')})")
    return sorted(kept.values(), key=study_time), dropped


def _download_table(client: MlflowClient, run_id: str, path: str) -> pd.DataFrame:
    return pd.read_csv(client.download_artifacts(run_id, path))


def decision_images(client: MlflowClient, experiment_id: str) -> pd.DataFrame:
    """One row per (image, decision run): the out-of-fold images of the FINISHED runs tagged ``informed_decision``
    in the MLflow experiment (the images a recipe decision was read from: :mod:`melanoma_lab.reporting.decisions`) (``path``, ``decision``, ``run_id``)."""
    query = f"attributes.status = 'FINISHED' and tags.{DECISION_TAG} != ''"
    tables = []
    for run in client.search_runs([experiment_id], query, max_results=5000):
        run_id = run.info.run_id
        if OOF_FILE not in {a.path for a in client.list_artifacts(run_id)}:
            continue
        paths = pd.read_csv(client.download_artifacts(run_id, OOF_FILE), usecols=["path"])["path"]
        tables.append(pd.DataFrame({"path": paths, "decision": run.data.tags[DECISION_TAG], "run_id": run_id}))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=DECISION_COLUMNS)


def load_study(client: MlflowClient, name: str) -> Study:
    """The runs the study launched (see :func:`select_runs`), with their predictions and history, and the images
    that informed a recipe decision (:mod:`melanoma_lab.reporting.decisions`)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        raise LookupError(f"no MLflow experiment named {name!r}: run the study first (make reproduce)")
    found = client.search_runs([experiment.experiment_id], order_by=["start_time ASC"], max_results=5000)
    selected, dropped = select_runs(found)
    cross_validated = bool(selected) and all("cv_folds" in r.data.tags for r in selected)
    runs, classes, audit, cv_rows = [], [], None, []
    for run in selected:
        run_id, tags = run.info.run_id, dict(run.data.tags)
        if "cv_folds" in tags:
            cv_rows.append({"experiment": tags.get("experiment"), "folds": int(tags["cv_folds"]),
                            "seed": tags.get("seed"), **run.data.metrics})
            if not cross_validated:  # single-split runs are the study's results; CV parents only their table
                continue
        artifacts = {a.path for a in client.list_artifacts(run_id)} | {
            a.path for a in client.list_artifacts(run_id, "evaluation")}
        wanted = {"oof": OOF_FILE} if cross_validated else {
            split: f"evaluation/{split}_predictions.csv" for split in ("val", "test")}
        predictions = {split: _download_table(client, run_id, path) for split, path in wanted.items()
                       if path in artifacts}
        first = "oof" if cross_validated else "val"
        if first not in predictions:
            dropped.append({"run_id": run_id, "experiment": tags.get("experiment", ""), "seed": tags.get("seed", ""),
                            "reason": "no predictions logged"})
            continue
        classes = [c[2:] for c in predictions[first].columns if c.startswith("p_")]
        history = {key: [m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]
                   for key in HISTORY_KEYS}
        if audit is None and "data_audit.json" in artifacts:
            audit = json.loads(Path(client.download_artifacts(run_id, "data_audit.json")).read_text())
        runs.append(StudyRun(run_id, tags.get("experiment", run.info.run_name), int(tags.get("seed", 0)),
                             dict(run.data.params), dict(run.data.metrics), history, predictions, tags))
    if not runs:
        raise LookupError(f"experiment {name!r} has no FINISHED runs with predictions launched by "
                          "melanoma-lab study (tag launched_by=study): run the study (make reproduce)")
    held_out = "oof" if cross_validated else "test" if all("test" in r.predictions for r in runs) else "val"
    return Study(name, runs, classes, audit, held_out, pd.DataFrame(cv_rows), pd.DataFrame(dropped),
                 runs[-1].params.get("dataset.melanoma_class"),
                 decisions=decision_images(client, experiment.experiment_id) if cross_validated else None)
