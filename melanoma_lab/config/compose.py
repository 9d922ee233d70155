"""One way to compose a run's configuration outside the command line: ``compose(overrides)``.

Tests, benchmarks, the tuner (one config per trial) and the study (one config per experiment and seed) all
compose ``conf/config.yaml`` with overrides exactly as ``python -m melanoma_lab <overrides>`` would. Inside a
running Hydra app (study, tuner) the app's own config search path is used; elsewhere ``conf/`` is.
"""

from __future__ import annotations

from pathlib import Path

from hydra import compose as hydra_compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
CONF_PATH = str(CONF_DIR)  # hydra.main's config_path: absolute, so the console script works from any folder


def compose(overrides: list[str], config_name: str = "config") -> DictConfig:
    """``conf/<config_name>.yaml`` composed with ``overrides``, as the command line would compose it."""
    from melanoma_lab.config.schema import register_configs

    register_configs()
    if GlobalHydra.instance().is_initialized():
        return hydra_compose(config_name=config_name, overrides=list(overrides))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))
