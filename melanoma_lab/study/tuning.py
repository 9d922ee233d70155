"""KerasTuner search over the space declared in ``conf/tuner/*.yaml`` (``tuner=hyperband|random|bayesian``).

Every trial composes the experiment's config with its values as Hydra overrides (so a value may be a list,
or a config group such as ``optimizer=sgd``), trains on data prepared once, and is one MLflow run nested under
the search run: its values as params, its epochs as metrics at their true step (Hyperband's continued trials
start at ``tuner/initial_epoch``). When the search ends, the best values are retrained and evaluated with
:func:`run_experiment` (a child of the search run) and written to
``<tuner.export_dir>/experiment/tuned/<tuner.export_name>.yaml``.

KerasTuner's state lives in ``tuner.directory``: ``tuner.resume=true`` continues an interrupted search.
With ``KERASTUNER_TUNER_ID``/``KERASTUNER_ORACLE_IP``/``KERASTUNER_ORACLE_PORT`` set (see
``melanoma_lab.study.tune_cluster``) the chief serves the oracle, retrains and exports; workers run trials.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

import keras
import keras_tuner
import pandas as pd
from melanoma_lab.config.compose import compose
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from melanoma_lab.config.schema import validate
from melanoma_lab.data.catalog import fingerprint
from melanoma_lab.evaluation import registry
from melanoma_lab.study.experiment import run_experiment
from melanoma_lab.study.search_space import check_search_space, dimensions, trial_overrides
from melanoma_lab.tracking.identity import config_hash, make_tracker, study_tags
from melanoma_lab.data.pipeline import PreparedData
from melanoma_lab.study.preparation import DataRecipe, load_audited_data, prepare_data
from melanoma_lab.tracking.stale_runs import repair_stale_runs
from melanoma_lab.tracking.provenance import code_version, runtime_tags
from melanoma_lab.runtime import seed_everything
from melanoma_lab.tracking.epochs import EpochLogger
from melanoma_lab.tracking.run import RunTracker, flatten
from melanoma_lab.training.fit import (TrainingRecipe, build_loss, compile_model, keras_verbosity, steps_per_epoch,
                                       training_inputs)
from melanoma_lab.data.staging import write_atomically

log = logging.getLogger(__name__)
TUNERS = {"hyperband": keras_tuner.Hyperband, "random": keras_tuner.RandomSearch,
          "bayesian": keras_tuner.BayesianOptimization}
SEARCH_RUN_FILE = "mlflow_search_run"
WORKER_WAIT_SECONDS = 300
ABSENT = object()


def role() -> str:
    """``local``, or in KerasTuner's distributed mode ``chief`` (serves the oracle) or ``worker``."""
    if not os.environ.get("KERASTUNER_ORACLE_IP"):
        return "local"
    return "chief" if "chief" in os.environ.get("KERASTUNER_TUNER_ID", "") else "worker"


class ConfiguredHyperModel(keras_tuner.HyperModel):
    """Builds and fits the experiment's model with a trial's values applied to the composed config."""

    def __init__(self, space: list[DictConfig], compose_trial: Callable[[list[str]], DictConfig],
                 data: PreparedData):
        super().__init__()
        self.space, self.compose_trial, self.data = space, compose_trial, data

    def recipe(self, hp: keras_tuner.HyperParameters) -> TrainingRecipe:
        """The trial's training recipe: the experiment's config with the trial's values applied."""
        trial = self.compose_trial(trial_overrides(self.space, hp))
        return TrainingRecipe(*map(trial.get, TrainingRecipe._fields))

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        recipe = self.recipe(hp)
        return compile_model(recipe, len(self.data.classes), steps_per_epoch(recipe.dataset.batch_size, self.data))[0]

    def fit(self, hp: keras_tuner.HyperParameters, model: keras.Model, *args: Any, callbacks: list, **kwargs: Any):
        """Fit on the trial's training batches; the validation callback goes first (the others read its val_<metric>)."""
        recipe = self.recipe(hp)
        train_ds, validation, class_weight = training_inputs(recipe, self.data, build_loss(recipe.loss))
        return model.fit(train_ds, callbacks=[validation, *callbacks], class_weight=class_weight,
                         verbose=keras_verbosity(recipe.trainer), shuffle=False, **kwargs)


class TrialRuns:
    """Mixed into a KerasTuner tuner: each trial is a nested MLflow run made by ``trial_tracker``."""

    trial_tracker: Callable[[str], RunTracker]

    def run_trial(self, trial: keras_tuner.engine.trial.Trial, *args: Any, **kwargs: Any) -> list:
        tracker = self.trial_tracker(trial.trial_id)
        with tracker:
            tracker.log_params({k: str(v) for k, v in trial.hyperparameters.values.items()})
            self._epoch_logger = EpochLogger(tracker)
            histories = super().run_trial(trial, *args, **kwargs)
            tracker.set_tags(runtime_tags(keras.mixed_precision.global_policy().name))  # as the trial's build set it
            objective = self.oracle.objective
            pick = max if objective.direction == "max" else min
            best = [pick(history.history[objective.name]) for history in histories]
            tracker.log_metrics({f"best_{objective.name}": sum(best) / len(best)})
        return histories

    def _build_and_fit_model(self, trial: keras_tuner.engine.trial.Trial, *args: Any, **kwargs: Any):
        kwargs["callbacks"] = [*kwargs["callbacks"], self._epoch_logger]  # not deep-copied: holds the run
        return super()._build_and_fit_model(trial, *args, **kwargs)


def build_tuner(settings: DictConfig, hypermodel: ConfiguredHyperModel, overwrite: bool) -> keras_tuner.Tuner:
    """The KerasTuner tuner of the ``tuner`` group's ``settings`` (with :class:`TrialRuns`), state in
    ``tuner.directory``."""
    base = TUNERS[settings.name]
    objective = registry.monitor_key(settings.objective)
    budget = ({"max_epochs": settings.max_epochs, "factor": settings.factor,
               "hyperband_iterations": settings.hyperband_iterations} if settings.name == "hyperband"
              else {"max_trials": settings.max_trials})
    directory = Path(settings.directory).resolve()
    return type(f"{base.__name__}WithRuns", (TrialRuns, base), {})(
        hypermodel=hypermodel, objective=keras_tuner.Objective(objective, registry.mode(objective)),
        executions_per_trial=settings.executions_per_trial, seed=settings.seed, directory=str(directory.parent),
        project_name=directory.name, overwrite=overwrite, **budget)


def search_identity(resolved: dict, files: pd.DataFrame) -> dict[str, str]:
    """Tags of a search: the base config (``resolved``, interpolations resolved), the tuner settings, the data and
    the code."""
    tuner = {k: v for k, v in resolved["tuner"].items()
             if k not in ("resume", "max_trials")}  # a resumed search may be given more trials
    digest = hashlib.sha256(json.dumps([config_hash(resolved), tuner],
                                       sort_keys=True, default=str).encode()).hexdigest()[:16]
    return {"kind": "tuner_search", "search_hash": digest, "data_fingerprint": fingerprint(files),
            "code_version": code_version()}


def search_run_id(directory: Path) -> str:
    """The search run's id, published by the chief (or local search) in ``directory``."""
    path = directory / SEARCH_RUN_FILE
    deadline = time.monotonic() + WORKER_WAIT_SECONDS
    while not path.is_file():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no search run published in {path} after {WORKER_WAIT_SECONDS}s: start the chief "
                               "(KERASTUNER_TUNER_ID=chief) with the same tuner.directory")
        time.sleep(1)
    return path.read_text().strip()


def tuned_experiment(base: DictConfig, best: list[str], name: str, header: str) -> str:
    """The YAML of an experiment file: ``base``'s defaults and values with the ``best`` overrides applied."""
    values = [o for o in best if "." in o.split("=", 1)[0]]
    groups = dict(o.split("=", 1) for o in best if o not in values)
    defaults = [d for d in OmegaConf.to_container(base.get("defaults", []))
                if not (isinstance(d, dict) and next(iter(d)).split("/")[-1] in groups) and d != "_self_"]
    defaults += [{f"override /{group}": choice} for group, choice in groups.items()] + ["_self_"]
    body = OmegaConf.merge({k: v for k, v in base.items() if k != "defaults"},
                           OmegaConf.from_dotlist(values), {"name": name})
    document = OmegaConf.to_yaml(OmegaConf.create({"defaults": defaults, **OmegaConf.to_container(body)}))
    return f"# @package _global_\n{header}\n{document}"


def base_experiment() -> DictConfig:
    """The experiment file the search started from (``experiment=...``), empty without one."""
    runtime = HydraConfig.get().runtime
    choice = runtime.choices.get("experiment")
    for source in runtime.config_sources if choice else []:
        candidate = Path(source.path) / "experiment" / f"{choice}.yaml"
        if source.schema == "file" and candidate.is_file():
            return OmegaConf.load(candidate)
    return OmegaConf.create({})


def trials_table(tuner: keras_tuner.Tuner) -> pd.DataFrame:
    trials = tuner.oracle.get_best_trials(num_trials=len(tuner.oracle.trials))
    return pd.DataFrame([{"trial_id": t.trial_id, "score": t.score, "status": t.status, **t.hyperparameters.values}
                         for t in trials])


def run_search(cfg: DictConfig, output_dir: str | Path, overrides: list[str],
               parent_run_id: str | None = None) -> dict[str, float]:
    """Search ``cfg.tuner.search_space`` (the search run under ``parent_run_id``, e.g. a sweep's, if given);
    returns the evaluated metrics of the retrained best values (a worker of a distributed search returns {})."""
    validate(cfg)
    check_search_space(cfg.tuner, lambda key: OmegaConf.select(cfg, key, default=ABSENT) is not ABSENT, overrides)
    output_dir, directory = Path(output_dir), Path(cfg.tuner.directory).resolve()
    audited = load_audited_data(cfg.dataset, cfg.audit, output_dir)
    seed_everything(cfg.trainer.seed, cfg.trainer.deterministic)
    data_recipe = DataRecipe(cfg.dataset, cfg.imbalance, cfg.audit, cfg.study, cfg.trainer.seed, cfg.paths.cache_dir)
    data = prepare_data(data_recipe, audited.catalog, audited.files, None)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    identity = search_identity(resolved, audited.files)
    name, tags = cfg.tuner.export_name, study_tags(cfg.study, cfg.dataset.name, cfg.trainer.seed)

    def compose_trial(extra: list[str]) -> DictConfig:
        return compose([*overrides, *extra])

    def trial_tracker(trial_id: str) -> RunTracker:
        return make_tracker(cfg.tracking, cfg.paths.mlruns_dir, f"{name}-trial-{trial_id}",
                            {**tags, "kind": "tuner_trial", "trial_id": trial_id,
                             "search_hash": identity["search_hash"]}, search_run_id(directory))

    hypermodel = ConfiguredHyperModel(dimensions(cfg.tuner), compose_trial, data)
    fit_kwargs: dict[str, Any] = {"epochs": cfg.tuner.max_epochs, "callbacks": []}
    if cfg.tuner.patience is not None:
        objective = registry.monitor_key(cfg.tuner.objective)
        fit_kwargs["callbacks"] = [keras.callbacks.EarlyStopping(objective, patience=cfg.tuner.patience,
                                                                 mode=registry.mode(objective))]
    if role() == "worker":
        tuner = build_tuner(cfg.tuner, hypermodel, overwrite=False)
        tuner.trial_tracker = trial_tracker
        tuner.search(**fit_kwargs)
        return {}
    search = make_tracker(cfg.tracking, cfg.paths.mlruns_dir, f"{name}-search",
                          {**tags, "experiment": cfg.name, **identity}, parent_run_id)
    repair_stale_runs(search)
    if cfg.tuner.resume:
        search.resume_unfinished(identity, statuses=("RUNNING", "KILLED", "FAILED", "FINISHED"))
    with search:
        if not search.resumed:  # MLflow params are write-once; a resumed search may be given more trials
            search.log_params(flatten(resolved))
        search.log_text("\n".join(overrides), "config/overrides.txt")
        tuner = build_tuner(cfg.tuner, hypermodel, overwrite=not cfg.tuner.resume)
        tuner.trial_tracker = trial_tracker
        directory.mkdir(parents=True, exist_ok=True)
        (directory / SEARCH_RUN_FILE).write_text(search.run_id or "")
        started = time.perf_counter()
        tuner.search(**fit_kwargs)
        table = trials_table(tuner)
        search.log_table(table, "tuner_trials.csv")
        best = trial_overrides(dimensions(cfg.tuner), tuner.get_best_hyperparameters(1)[0])
        best_trial = tuner.oracle.get_best_trials(1)[0]
        search.log_metrics({"search_seconds": time.perf_counter() - started, "trials": len(table),
                            f"best_{tuner.oracle.objective.name}": best_trial.score})
        search.set_tags({"best_trial_id": best_trial.trial_id, "best_overrides": " ".join(best)})
        log.info("best trial %s (%s=%.4f): %s", best_trial.trial_id, cfg.tuner.objective, best_trial.score, best)
        results = run_experiment(compose_trial([*best, f"name={name}"]), output_dir / "best",
                                 [*overrides, *best, f"name={name}"], parent_run_id=search.run_id)
        exported = Path(cfg.tuner.export_dir).resolve() / "experiment" / "tuned" / f"{name}.yaml"
        header = (f"# Tuned with tuner={cfg.tuner.name} (MLflow search run {search.run_id}, best trial "
                  f"{best_trial.trial_id}, {cfg.tuner.objective}={best_trial.score:.4f}).\n"
                  f"# Reproduce: python -m melanoma_lab experiment=tuned/{name}")
        write_atomically(exported, tuned_experiment(base_experiment(), best, name, header))
        search.log_text(exported.read_text(), f"tuned/{name}.yaml")
        log.info("tuned experiment written to %s", exported)
    return results
