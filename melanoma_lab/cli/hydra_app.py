"""Hydra commands: :func:`hydra_command` makes one (``@hydra.main`` over ``conf/``, the config checked before the
command runs), :func:`run_hydra_app` runs it from the command line: a user error is one ``error:`` line and exit
status 2.

Hydra reports its own errors (a misspelt option, key or group, an override it cannot parse) over several lines
with advice to set ``HYDRA_FULL_ERROR=1``, and exits with status 1 as for a bug. Here Hydra raises them instead
and :func:`melanoma_lab.config.messages.describe` says what is wrong in one line; a bug keeps its traceback (exit
status 1). With ``HYDRA_FULL_ERROR=1`` set by the user, every error keeps its full traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

from melanoma_lab.config.compose import CONF_PATH, with_conf_dir
from melanoma_lab.config.messages import describe
from melanoma_lab.errors import USER_ERROR_STATUS, UserError

FULL_ERROR = "HYDRA_FULL_ERROR"


def hydra_command(task: Callable[..., Any], config_name: str = "config", nodes: tuple[str, ...] = ()) -> Callable:
    """A Hydra app that composes ``config_name``, validates it, then runs ``task``: with the config nodes named in
    ``nodes`` (``task(cfg.dataset, cfg.audit)`` for ``nodes=("dataset", "audit")``: a command that reads a few
    groups), or, with no ``nodes``, as an orchestrator: ``task(cfg, output_dir, overrides)`` (Hydra's output folder
    and the command line's overrides). Returns what ``task`` returns (a sweeper's objective)."""
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from melanoma_lab.config.schema import validate
    from melanoma_lab.evaluation import registry  # noqa: F401  registers its checks (trainer.monitor, tuner.objective)

    @hydra.main(version_base="1.3", config_path=CONF_PATH, config_name=config_name)
    def app(cfg):
        runtime = HydraConfig.get()
        try:
            validate(cfg)  # before TensorFlow loads: a mistyped value fails in a second
            if nodes:
                return task(*(cfg[name] for name in nodes))
            return task(cfg, Path(runtime.runtime.output_dir), list(runtime.overrides.task))
        except UserError as error:
            if runtime.mode == RunMode.MULTIRUN:
                raise  # the sweep callback reports the failed job and the sweep goes on
            print(f"error: {describe(error)}", file=sys.stderr)  # not Hydra's "Error executing job" log line
            raise SystemExit(USER_ERROR_STATUS) from None

    app.__doc__ = task.__doc__
    return app


def run_hydra_app(app: Callable[[], Any], name: str, arguments: list[str]) -> Any:
    """``app()`` with ``sys.argv`` = ``name`` and ``arguments`` (``paths.conf_dir`` added to Hydra's search path)."""
    sys.argv = [name, *with_conf_dir(arguments)]
    asked = os.environ.get(FULL_ERROR)
    os.environ[FULL_ERROR] = "1"  # Hydra raises its errors rather than printing them and exiting with status 1
    try:
        return app()
    except Exception as error:
        message = None if asked == "1" else describe(error)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(USER_ERROR_STATUS) from None
    finally:
        if asked is None:
            os.environ.pop(FULL_ERROR, None)
        else:
            os.environ[FULL_ERROR] = asked
