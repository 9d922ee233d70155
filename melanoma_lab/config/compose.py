"""One way to compose a run's configuration outside the command line: ``compose(overrides)``.

Tests, benchmarks, the tuner (one config per trial) and the study (one config per experiment and seed) all
compose ``conf/config.yaml`` with overrides exactly as ``python -m melanoma_lab <overrides>`` would. Inside a
running Hydra app (study, tuner) the app's own config search path is used; elsewhere ``conf/`` is.

The package's ``conf/`` (:data:`CONF_DIR`) is read-only to the code. A user's own configs, and the experiments
the tuner exports, live in ``paths.conf_dir`` (``${paths.root_dir}/conf``), which :func:`with_conf_dir` adds to
Hydra's search path (after ``conf/`` and any ``hydra.searchpath=[...]`` given), so ``experiment=NAME`` finds
``<paths.conf_dir>/experiment/NAME.yaml``.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from hydra import compose as hydra_compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

def _conf_dir() -> Path:
    """The copy of conf/ shipped inside an installed wheel (``melanoma_lab/conf``), else a checkout's ./conf."""
    package = Path(__file__).resolve().parents[1]
    return package / "conf" if (package / "conf" / "config.yaml").is_file() else package.parent / "conf"


CONF_DIR = _conf_dir()
CONF_PATH = str(CONF_DIR)  # hydra.main's config_path: absolute, so the console script works from any folder
SEARCHPATH = "hydra.searchpath"
_PATHS = re.compile(r"[+~]*paths(?:[.=/]|$)")


def _compose(overrides: list[str], config_name: str) -> DictConfig:
    from melanoma_lab.config.schema import register_configs

    register_configs()
    if GlobalHydra.instance().is_initialized():
        return hydra_compose(config_name=config_name, overrides=list(overrides))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


@functools.lru_cache(maxsize=64)
def _conf_dir_setting(paths_overrides: tuple[str, ...]) -> str | None:
    try:
        return str(_compose(list(paths_overrides), "config").paths.conf_dir)
    except Exception:  # a sweep (paths.root_dir=a,b) or a bad override: Hydra reports it in the real composition
        return None


def user_conf_dir(paths_overrides: tuple[str, ...] = ()) -> Path | None:
    """``paths.conf_dir`` under these ``paths`` overrides, absolute; None where it is not a folder (yet), or is the
    package's own ``conf/``."""
    setting = _conf_dir_setting(tuple(paths_overrides))
    folder = Path(setting).resolve() if setting else None
    return folder if folder and folder.is_dir() and folder != CONF_DIR.resolve() else None


def _quoted(entry: str) -> str:
    return "'" + entry.replace("\\", "\\\\").replace("'", "\\'") + "'"


def with_conf_dir(arguments: list[str]) -> list[str]:
    """``arguments`` (Hydra overrides, and flags of a Hydra app's command line) with ``paths.conf_dir`` appended to
    ``hydra.searchpath`` when that folder exists: a given ``hydra.searchpath=[...]`` is kept and extended."""
    at = [i for i, a in enumerate(arguments) if "=" in a and not a.startswith("-")]  # the overrides, not flags
    folder = user_conf_dir(tuple(arguments[i] for i in at if _PATHS.match(arguments[i])))
    if folder is None:
        return list(arguments)
    entry = f"file://{folder}"
    given = [i for i in at if arguments[i].split("=", 1)[0].lstrip("+") == SEARCHPATH]
    if not given:  # next to the other overrides: argparse takes them as one run of positional arguments
        end = at[-1] + 1 if at else len(arguments)
        return [*arguments[:end], f"{SEARCHPATH}=[{_quoted(entry)}]", *arguments[end:]]
    from hydra.core.override_parser.overrides_parser import OverridesParser

    index = given[-1]
    try:
        entries = list(OverridesParser.create().parse_override(arguments[index]).value() or [])
    except Exception:  # not a list: Hydra reports it
        return list(arguments)
    if entry in entries:
        return list(arguments)
    extended = f"{SEARCHPATH}=[{','.join(_quoted(str(e)) for e in [*entries, entry])}]"
    return [*arguments[:index], extended, *arguments[index + 1:]]


def compose(overrides: list[str], config_name: str = "config") -> DictConfig:
    """``conf/<config_name>.yaml`` composed with ``overrides``, as the command line would compose it (with
    ``paths.conf_dir`` on the search path)."""
    return _compose(with_conf_dir(list(overrides)), config_name)
