"""A search space (``tuner.search_space``): its entries with their defaults, what makes one unsearchable, and a
trial's values as Hydra overrides. Imports no TensorFlow or KerasTuner (a trial's ``hp`` is passed in)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable

from omegaconf import DictConfig, OmegaConf

from melanoma_lab.errors import ConfigError

if TYPE_CHECKING:
    import keras_tuner

TUNABLE = ("model", "optimizer", "trainer", "augmentation", "loss", "lr_schedule")
FIXED = ("trainer.epochs", "trainer.seed", "trainer.strategy", "trainer.resume")


def dimensions(tuner: DictConfig) -> list[DictConfig]:
    """The entries of ``tuner.search_space`` (by default the chosen model's ``tuner.spaces``), each with every
    field of :class:`melanoma_lab.config.schema.SearchParameter` (its defaults where the entry leaves one out)."""
    from melanoma_lab.config.schema import SearchParameter

    return [OmegaConf.merge(OmegaConf.structured(SearchParameter), entry) for entry in tuner.search_space]


def check_search_space(tuner: DictConfig, is_config_key: Callable[[str], bool], overrides: list[str]) -> None:
    """Raise :class:`ConfigError` for an entry of ``tuner.search_space`` that cannot be searched: a key for which
    ``is_config_key`` is false, one outside the tunable groups, one also in ``overrides``, or a bad range."""
    problems = []
    set_on_command_line = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    for index, entry in enumerate(dimensions(tuner)):
        where = f"tuner.search_space[{index}] (key {entry.key})"
        if not is_config_key(entry.key):
            problems.append(f"{where}: {entry.key} is not a config key or group; e.g. model.dropout or optimizer")
        elif not entry.key.startswith(TUNABLE) or entry.key in FIXED:
            problems.append(f"{where}: data and training budget are fixed for a whole search; tune keys under "
                            f"{', '.join(TUNABLE)} (not {', '.join(FIXED)}) or sweep it with --multirun")
        if entry.key in set_on_command_line:
            problems.append(f"{where}: also set on the command line; drop one of the two")
        if entry.type == "choice" and not entry["values"]:
            problems.append(f"{where}: type choice needs values: [...]")
        elif entry.type in ("int", "float") and not (entry.min is not None and entry.max is not None
                                                      and entry.min < entry.max):
            problems.append(f"{where}: type {entry.type} needs min < max")
        elif entry.type not in ("choice", "int", "float"):
            problems.append(f"{where}: type={entry.type!r} must be choice, int or float")
        if entry.sampling not in ("linear", "log") or (entry.sampling == "log" and (entry.min or 0) <= 0):
            problems.append(f"{where}: sampling must be linear, or log with min > 0")
    if problems:
        raise ConfigError("invalid search space: " + "; ".join(problems))


def _override_value(value: Any) -> str:
    """A Python value as Hydra override syntax (lists as ``[8,16]``)."""
    return json.dumps(value, separators=(",", ":")) if isinstance(value, (list, dict)) else str(value)


def define(hp: keras_tuner.HyperParameters, entry: DictConfig) -> str:
    """Register ``entry`` in ``hp`` and return the trial's value in Hydra override syntax."""
    if entry.type == "int":
        return str(hp.Int(entry.key, int(entry.min), int(entry.max), step=int(entry.step or 1),
                          sampling=entry.sampling))
    if entry.type == "float":
        return f"{hp.Float(entry.key, entry.min, entry.max, step=entry.step, sampling=entry.sampling):.8g}"
    return hp.Choice(entry.key, [_override_value(v) for v in OmegaConf.to_container(entry["values"])])


def trial_overrides(space: list[DictConfig], hp: keras_tuner.HyperParameters) -> list[str]:
    """The Hydra overrides of one trial, e.g. ``["model.dropout=0.2", "optimizer=sgd"]``."""
    return [f"{entry.key}={define(hp, entry)}" for entry in space]
