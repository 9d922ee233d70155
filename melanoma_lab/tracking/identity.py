"""A run's identity and where it goes: the tags that make two runs the same (config, data, code, fold), the
configured run in the configured store, and reuse of a FINISHED twin.

Light on purpose (MLflow, pandas, no TensorFlow): the sweep callback (:mod:`melanoma_lab.study.sweep`) opens and
closes parent runs with it in the launcher process, which never trains.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from melanoma_lab.data.calibration_slice import identity_tags as calibration_tags
from melanoma_lab.data.catalog import file_sha256, fingerprint
from melanoma_lab.tracking.provenance import code_version, provenance_tags
from melanoma_lab.tracking.run import MODEL_LOGGED, RunTracker
from melanoma_lab.tracking.stale_runs import repair_stale_runs
from melanoma_lab.tracking.store import configured_tracking_uri

log = logging.getLogger(__name__)


def run_identity(resolved: dict, files: pd.DataFrame, fold: int | None = None) -> dict[str, str]:
    """The tags that make two runs the same run: config (``resolved``, the whole config with its interpolations
    resolved), data, code, what kind of run (``run_kind``: a single split or a fold of a cross-validation, whose
    parent is ``cv``) and for a fold which one and how it was split (with the share of Train held out before the
    folds for a fold ensemble's threshold, ``calibration_fraction``, when there is one). Reuse looks for a run carrying all these tags,
    so every kind names itself: without ``run_kind`` a fold (a superset of a single run's tags) would stand in for a
    single-split run."""
    identity = {"config_hash": config_hash(resolved), "data_fingerprint": fingerprint(files),
                "code_version": code_version(), **input_file_tags(resolved["model"]),
                "run_kind": "single" if fold is None else "fold"}
    if fold is not None:  # study.* is not in the config hash, and the fold and nesting change the result
        study = resolved["study"]
        identity |= {"fold": f"{fold + 1}/{study['cv_folds']}", "nested": str(bool(study.get("nested", False))).lower()}
        identity |= calibration_tags(study)  # a calibration slice held out before the folds changes them
    return identity


def input_file_tags(model: dict) -> dict[str, str]:
    """The content hash of the model's weights file, when ``model.weights`` names one (``model``: the resolved
    ``model`` group): the config holds only its path, and a FINISHED run that started from other weights under the
    same path is no twin."""
    from melanoma_lab.config.plugins import resolve

    weights_tags = getattr(resolve(model["_target_"], "model"), "weights_tags", None)
    if weights_tags is not None:  # a builder that knows its own weights (melanoma_lab.components.efficientnet_lite)
        return weights_tags(model)
    weights = model.get("weights")
    path = Path(str(weights)).expanduser() if weights not in (None, "imagenet") else None
    if path is None or not path.is_file():
        return {}
    return {"model_weights_sha256": file_sha256(path)[:16]}


def config_hash(resolved: dict) -> str:
    """Hash of everything that can change a result (all groups but where files go and how runs are tracked;
    ``trainer.resume`` only says whether an interrupted run continues)."""
    relevant = {k: v for k, v in resolved.items() if k not in ("paths", "tracking", "study", "tuner")}
    relevant["trainer"] = {k: v for k, v in relevant.get("trainer", {}).items() if k != "resume"}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:16]


def override_tags(overrides: list[str] | None) -> dict[str, str]:
    """``overrides`` (all of them) plus ``override.<key>`` per override, so the UI can group runs by any of them."""
    pairs = [o.lstrip("+~").split("=", 1) for o in overrides or [] if "=" in o]
    return {"overrides": " ".join(overrides or []), **{f"override.{key}": value for key, value in pairs}}


def study_tags(study: DictConfig, dataset: str, seed: int) -> dict[str, str]:
    """What every run of a study is tagged with: the study, dataset and seed, and the study launch that asked for
    it (``study.launch``, set by melanoma-lab study: the report uses only these runs)."""
    tags = {"study": study.name, "dataset": dataset, "seed": str(seed)}
    if study.get("launch"):
        tags |= {"launched_by": "study", "study_launch": study.launch}
    return tags


def make_tracker(tracking: DictConfig, mlruns_dir: str, run_name: str, tags: dict[str, str],
                 parent_run_id: str | None = None, primary: bool = True, trains: bool = False) -> RunTracker:
    """A run in the configured store (``tracking``, ``paths.mlruns_dir``) and MLflow experiment, tagged for
    provenance and with ``tags`` (none in a process that trains with others but is not their primary: only the
    primary logs, see :class:`melanoma_lab.runtime.Processes`); a run that ``trains`` records system metrics if
    ``tracking.system_metrics``."""
    return RunTracker(tracking.enabled and primary, configured_tracking_uri(tracking, mlruns_dir),
                      tracking.experiment_name, run_name, Path(mlruns_dir).resolve(), provenance_tags() | tags,
                      parent_run_id, system_metrics=trains and bool(tracking.get("system_metrics", False)))


def reusable(identity: dict[str, str], needs_model: bool) -> dict[str, str]:
    """The tags a FINISHED run must carry to stand in for a new one: its identity, and its logged model when this
    run would log one (``tracking.log_model`` is not part of the identity: a twin that logged no model is not
    reused, or a fold ensemble would find no fold model)."""
    return identity | ({MODEL_LOGGED: "true"} if needs_model else {})


def finished_twin(tracker: RunTracker, identity: dict[str, str], skip_finished: bool, launch: str | None = None,
                  needs_model: bool = False) -> dict[str, float] | None:
    """Metrics of a FINISHED run with the same identity (and a logged model if ``needs_model``), when
    ``skip_finished`` (``tracking.skip_finished``) allows reuse (first marking FAILED every run of this host left
    RUNNING by a killed process, whatever its config). A study (``launch``: ``study.launch``) adopts a twin that was
    run by hand: the run it asked for exists, so it is tagged ``launched_by=study`` and ``adopted_by_study=<launch>``
    and counts in the report."""
    repair_stale_runs(tracker)
    previous = tracker.finished_run_with(reusable(identity, needs_model)) if skip_finished else None
    if previous is None:
        return None
    log.warning("reusing run %s for %s: it FINISHED with the same config, data and code (%s); "
                "tracking.skip_finished=false trains it again", previous.info.run_id, tracker.run_name,
                identity.get("code_version"))
    if launch and previous.data.tags.get("launched_by") != "study":
        tracker.set_tags({"study_launch": launch, "adopted_by_study": launch,  # launched_by last: a half-written
                          "adopted_at_ms": str(int(time.time() * 1000)),     # adoption is redone next time
                          "launched_by": "study"}, run_id=previous.info.run_id)
    return dict(previous.data.metrics)
