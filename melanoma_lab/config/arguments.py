"""Flag-style command lines (predict, promote, report, ablation, ui, stale_runs) take the store and paths from
``conf/``.

Besides its own flags, each such command takes trailing ``key=value`` overrides of ``conf/config.yaml`` in Hydra's
syntax, composed exactly as for ``python -m melanoma_lab`` (:func:`melanoma_lab.config.compose.compose`)::

    melanoma-lab predict lesion.jpg --json paths.root_dir=/data/lab
    melanoma-lab report tracking.tracking_uri=http://127.0.0.1:5000

so ``paths.root_dir=DIR`` or ``tracking.tracking_uri=URI`` means the same store for every command, and the store is
resolved once, by :func:`melanoma_lab.tracking.store.configured_tracking_uri` (``MLFLOW_TRACKING_URI`` first).
``--tracking-uri URI`` is shorthand for ``tracking.tracking_uri=URI``. Apps without plain file arguments
(``python -m melanoma_lab``, ``evaluate``, ``study``, ``serving.serve``) are Hydra apps and take the same overrides.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from hydra.errors import HydraException
from omegaconf import DictConfig

from melanoma_lab.config.compose import compose
from melanoma_lab.errors import UserError

# key=value, +key=value, ++key=value, ~key[=value]; keys are dotted names, groups may have a /path or @package
_OVERRIDE = re.compile(r"(\+{1,2})?[A-Za-z_][\w-]*(?:[./@][\w-]+)*=|~[A-Za-z_][\w-]*(?:[./@][\w-]+)*(?:=|$)")
OVERRIDES_HELP = ("key=value ...: overrides of conf/config.yaml, as for python -m melanoma_lab (e.g. "
                  "paths.root_dir=DIR, tracking.tracking_uri=URI): where the tracking store and the paths are")


def is_override(argument: str) -> bool:
    """A Hydra ``key=value`` override (not an existing file whose name happens to look like one)."""
    return bool(_OVERRIDE.match(argument)) and not Path(argument).exists()


def parse_with_config(parser: argparse.ArgumentParser,
                      argv: list[str] | None = None) -> tuple[argparse.Namespace, DictConfig]:
    """``parser``'s arguments, and ``conf/config.yaml`` composed with the ``key=value`` overrides among ``argv``
    (except a value-taking flag's value: ``--baseline key=value``). A bad override is a usage error (exit status 2)
    naming it. Flags are not abbreviated: ``--base`` would take ``--baseline``'s value as an override."""
    parser.allow_abbrev = False
    parser.add_argument("--tracking-uri", default=None, help="shorthand for tracking.tracking_uri=URI")
    parser.epilog = "\n".join(filter(None, [parser.epilog, OVERRIDES_HELP]))
    argv = sys.argv[1:] if argv is None else list(argv)
    takes_value = {flag for action in parser._actions for flag in action.option_strings if action.nargs != 0}
    values = {i + 1 for i, argument in enumerate(argv) if argument in takes_value}  # "--baseline key=value"
    is_config = [i not in values and is_override(argument) for i, argument in enumerate(argv)]
    overrides = [argument for argument, config in zip(argv, is_config) if config]
    args = parser.parse_args([argument for argument, config in zip(argv, is_config) if not config])
    try:
        cfg = compose(overrides)
    except (HydraException, UserError) as error:
        parser.error(f"{' '.join(overrides)}: {error}")
    if args.tracking_uri:
        cfg.tracking.tracking_uri = args.tracking_uri
    return args, cfg
