"""Structured configs: the schema every YAML file in ``conf/`` is merged into.

Each config group file starts with ``defaults: [_schema, _self_]``, so Hydra rejects a misspelt key or a
wrongly typed value before anything runs, and :func:`validate` refuses a key added with ``+group.key=`` that the
group's schema does not have. The schema states types only: every default is stated once, in ``conf/`` (a
plug-in's in its signature), and each field here is ``MISSING`` (tests/test_config.py keeps it so). Value ranges
that types cannot express are checked by :func:`validate`, also before any data is read. Plug-in groups (model,
imbalance, augmentation, loss, lr_schedule, callbacks) have no schema here: their ``_target_``'s signature is the
schema (:mod:`melanoma_lab.config.plugins`).
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from melanoma_lab.config.help import register_help
from melanoma_lab.config.checks import CHECKS
from melanoma_lab.config.plugins import KERAS_ARGUMENTS, target_problems
from melanoma_lab.errors import ConfigError


@dataclass
class PathsConfig:
    root_dir: str = MISSING
    data_dir: str = MISSING
    cache_dir: str = MISSING
    experiments_dir: str = MISSING
    mlruns_dir: str = MISSING
    conf_dir: str = MISSING  # your own config folder, on Hydra's search path (melanoma_lab.config.searchpath)


@dataclass
class DatasetConfig:
    name: str = MISSING
    root: Optional[str] = MISSING
    image_size: int = MISSING
    batch_size: int = MISSING
    val_fraction: float = MISSING
    melanoma_class: str = MISSING  # the dataset's melanoma label (alert and melanoma_* metrics)
    on_unreadable: str = MISSING  # skip | fail
    ram_budget_mb: Optional[float] = MISSING  # decoded training split larger than this: read from a disk cache
    source: Any = MISSING  # {_target_: a function of melanoma_lab.data returning a Catalog, its keywords}
    colour_constancy_power: Optional[float] = MISSING  # Shades of Gray p-norm (6: ISIC winners) after decoding
    colour_constancy_grey: Optional[float] = MISSING  # its target grey level (0-1]; null: each image keeps its own


@dataclass
class OptimizerConfig:
    _target_: str = MISSING
    learning_rate: float = MISSING
    use_ema: bool = MISSING  # Keras' exponential moving average of the weights (validated and kept each epoch)
    ema_momentum: float = MISSING
    weight_decay: Optional[float] = MISSING  # decoupled weight decay (Keras: w -= lr * weight_decay * w); null: none


@dataclass
class SGDConfig(OptimizerConfig):
    momentum: float = MISSING
    nesterov: bool = MISSING


@dataclass
class TrainerConfig:
    epochs: int = MISSING
    seed: int = MISSING
    deterministic: bool = MISSING
    monitor: str = MISSING  # picks the best epoch (early stopping, checkpoint); an epoch metric of the registry
    resume: bool = MISSING  # continue an interrupted (KILLED/FAILED) run of the same config from its last epoch
    precision: str = MISSING  # float32 | mixed_bfloat16 | mixed_float16 | auto (by device: melanoma_lab.runtime)
    strategy: str = MISSING  # default | mirrored (all local devices) | multi_worker (processes; README)
    verbose: int = MISSING  # 0 silent, 1 progress bar, 2 a line per epoch, 3: also TensorFlow's and MLflow's own logs
    head_epochs: int = MISSING  # first train only the new head, the pretrained backbone frozen (then all of `epochs`)
    head_learning_rate: float = MISSING  # the head-only epochs' constant rate (optimizer.learning_rate: the rest)


@dataclass
class TrackingConfig:
    enabled: bool = MISSING
    tracking_uri: Optional[str] = MISSING  # None: sqlite store under paths.mlruns_dir; MLFLOW_TRACKING_URI wins
    experiment_name: str = MISSING
    log_model: bool = MISSING
    skip_finished: bool = MISSING  # a run whose config, data and code match a FINISHED run is reused
    system_metrics: bool = MISSING  # training runs: MLflow's system/* metrics (CPU, memory, disk, network, GPU)


@dataclass
class EvaluationConfig:
    fixed_specificity: float = MISSING
    fixed_sensitivity: float = MISSING
    calibration_bins: int = MISSING
    ood_flag_rate: float = MISSING  # the share of validation lesions the input check may flag (its threshold)
    tta: str = MISSING  # none | flip | dihedral (true/false: aliases of flip/none)
    epoch_tta: Optional[str] = MISSING  # the views of each epoch's validation (the epoch selection); None: tta
    train_pass_images: Optional[int] = MISSING  # most original training images in the clean train pass; None: all
    frequent_class_images: int = MISSING  # out-of-fold balanced accuracy is also reported over classes with >= this
    subgroup_min_images: int = MISSING  # a metadata subgroup smaller than this is listed, not scored (subgroups.py)
    age_bins: list[float] = MISSING
    shift_tta: str = MISSING  # the views of the shift check's predictions
    shifts: Any = MISSING  # the shift check's acquisition shifts: family -> name -> {_target_, ...} (shifts.py)


@dataclass
class AuditConfig:
    conflict_policy: str = MISSING  # warn | drop | fail
    near_duplicate_distance: int = MISSING  # max Hamming distance between perceptual hashes
    test_contamination: str = MISSING  # Train copies of Test images: exclude (from training) | keep (warns)
    out: Optional[str] = MISSING  # where audit.json goes; None: the run's output folder


@dataclass
class StudyConfig:
    name: str = MISSING  # also the MLflow experiment that holds the study's runs
    experiments: list[str] = MISSING
    seeds: list[int] = MISSING
    cv_folds: int = MISSING  # K > 1: every experiment runs as K stratified, content-grouped folds
    cv_run_folds: Optional[list[int]] = MISSING  # run only these folds (1-based), e.g. [1, 2] for quick ablations
    nested: bool = MISSING  # CV: select epoch and alert threshold on an inner split of each fold's training part
    ensemble: bool = MISSING  # CV: log the average of the fold models as one model
    calibration_fraction: float = MISSING  # CV with ensemble: share of Train held out before the folds, where the
    #                                        ensemble's own probabilities choose its alert threshold (0: member OOF)
    shift_check: bool = MISSING  # CV: score the out-of-fold images again under evaluation.shifts (shift_check.py)
    sweep_objective: str = MISSING  # what a Hydra sweeper optimises: val (inner validation) | fold (outer folds)
    bootstrap_samples: int = MISSING
    confidence: float = MISSING
    reports_dir: str = MISSING
    launch: Optional[str] = MISSING  # set by the study runner per invocation: tags the runs it launches


@dataclass
class ServingConfig:
    model_uri: str = MISSING
    host: str = MISSING  # loopback only; 0.0.0.0 exposes the model to the network
    port: int = MISSING
    workers: int = MISSING


@dataclass
class SearchParameter:
    """One dimension of a KerasTuner search: a config key (or config group) and the values it may take. Its defaults
    are those of each list item (no YAML states them)."""
    key: str = MISSING  # e.g. model.dropout, optimizer.learning_rate, optimizer (a group: values adam, sgd)
    type: str = "choice"  # choice | int | float
    values: list[Any] = field(default_factory=list)  # choice: the candidates (lists allowed, e.g. [8, 16])
    min: Optional[float] = None  # int | float: the range
    max: Optional[float] = None
    step: Optional[float] = None
    sampling: str = "linear"  # linear | log


@dataclass
class TunerConfig:
    name: str = MISSING  # hyperband | random | bayesian
    objective: str = MISSING  # an epoch metric of the registry (val_loss: minimised)
    max_trials: int = MISSING  # random | bayesian: trials in all (hyperband: its brackets decide)
    executions_per_trial: int = MISSING  # trainings per trial, objective averaged
    max_epochs: int = MISSING  # epochs of a trial (hyperband: the most); conf: ${trainer.epochs}
    factor: int = MISSING  # hyperband: reduction factor between brackets
    hyperband_iterations: int = MISSING
    patience: Optional[int] = MISSING  # early stopping of a trial on the objective; null: train every epoch
    seed: int = MISSING  # conf: ${trainer.seed}
    resume: bool = MISSING  # true: continue the search whose state is in directory (KerasTuner overwrite=False)
    directory: str = MISSING  # KerasTuner's state (oracle, trials, checkpoints)
    export_name: str = MISSING  # the tuned experiment: <export_dir>/experiment/tuned/<export_name>.yaml
    export_dir: str = MISSING  # a Hydra config folder (conf/, or one added with hydra.searchpath=[file://DIR])
    search_space: list[SearchParameter] = MISSING  # conf: spaces.<model.name>
    spaces: dict[str, list[SearchParameter]] = MISSING  # the default space of each model


@dataclass
class Config:
    name: str = MISSING
    paths: PathsConfig = field(default_factory=PathsConfig)
    dataset: Any = MISSING
    augmentation: Any = MISSING  # plug-in groups (augmentation ... callbacks): checked by melanoma_lab.config.plugins
    imbalance: Any = MISSING
    model: Any = MISSING
    loss: Any = MISSING
    lr_schedule: Any = MISSING
    callbacks: Any = MISSING
    optimizer: Any = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    tuner: Any = MISSING  # tuner=hyperband|random|bayesian: a KerasTuner search instead of one run


GROUP_SCHEMAS: dict[str, dict[str, type]] = {
    "dataset": {"_schema": DatasetConfig},
    "optimizer": {"_schema": OptimizerConfig, "_sgd_schema": SGDConfig},
    "trainer": {"_schema": TrainerConfig},
    "tracking": {"_schema": TrackingConfig},
    "evaluation": {"_schema": EvaluationConfig},
    "audit": {"_schema": AuditConfig},
    "paths": {"_schema": PathsConfig},
    "study": {"_schema": StudyConfig},
    "serving": {"_schema": ServingConfig},
    "tuner": {"_schema": TunerConfig},
}


def register_configs() -> None:
    """Register the root schema and one schema per config group with Hydra's ConfigStore."""
    register_help()  # --help lists the groups without these schemas
    store = ConfigStore.instance()
    store.store(name="_schema", node=Config)
    for group, schemas in GROUP_SCHEMAS.items():
        for name, node in schemas.items():
            store.store(group=group, name=name, node=node)


def unknown_keys(node: DictConfig, where: str) -> list[str]:
    """Keys of ``node`` (the config node at ``where``, and of its nested schema nodes) that their closed schema does
    not have: added with ``+group.key=value``, which Hydra allows even in a structured config. A node with a
    ``_target_`` (optimizer) is open: its target's signature decides (:mod:`melanoma_lab.config.plugins`)."""
    fields = _schema_fields(node)
    if fields is None:
        return []
    problems = []
    for key in node.keys():
        path = f"{where}.{key}" if where else str(key)
        if key in fields:
            child = node._get_node(key)
            problems += unknown_keys(child, path) if isinstance(child, DictConfig) and not child._is_none() else []
        elif "_target_" not in fields:
            problems.append(_unknown_key(path, str(key), fields))
    return problems


def _schema_fields(node: DictConfig) -> list[str] | None:
    schema = OmegaConf.get_type(node)
    return [f.name for f in dataclasses.fields(schema)] if dataclasses.is_dataclass(schema) else None


def _unknown_key(path: str, key: str, fields: list[str]) -> str:
    near = difflib.get_close_matches(key, fields, n=1)
    hint = f"did you mean {path[:-len(key)]}{near[0]}?" if near else f"known: {', '.join(fields)}"
    return f"{path}: unknown key ({hint})"


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` naming every key out of range, unknown, or (plug-in groups) of the wrong type for
    its ``_target_``'s signature. Imports no TensorFlow."""
    groups = [field.name for field in dataclasses.fields(Config)]  # the training config's groups (evaluate's is open)
    typed = OmegaConf.get_type(cfg) is Config
    problems = [_unknown_key(str(key), str(key), groups) for key in cfg.keys() if typed and key not in groups]
    for group in cfg.keys():
        node = cfg._get_node(group)
        problems += target_problems(node, str(group), KERAS_ARGUMENTS)
        problems += unknown_keys(node, str(group)) if isinstance(node, DictConfig) and not node._is_none() else []
    for key, is_valid, requirement in CHECKS:
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if value is not None and not is_valid(value):
            problems.append(f"{key}={value!r} {requirement() if callable(requirement) else requirement}")
    head, epochs = (OmegaConf.select(cfg, f"trainer.{k}", default=None) for k in ("head_epochs", "epochs"))
    if head and epochs and head >= epochs:
        problems.append(f"trainer.head_epochs={head} must be fewer than trainer.epochs={epochs} (the epochs in all, "
                        "head-only ones included): the backbone would never be fine-tuned")
    power, grey = (OmegaConf.select(cfg, f"dataset.colour_constancy_{k}", default=None) for k in ("power", "grey"))
    if grey is not None and power is None:
        problems.append(f"dataset.colour_constancy_grey={grey!r} is the grey level of Shades of Gray colour constancy, "
                        "which is off (dataset.colour_constancy_power=null): set dataset.colour_constancy_power=6 too, "
                        "or dataset.colour_constancy_grey=null")
    if problems:
        raise ConfigError("invalid config: " + "; ".join(problems))
