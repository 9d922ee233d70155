"""Run a Hydra app (``@hydra.main``) from the command line: a user error is one ``error:`` line and exit status 2.

Hydra reports its own errors (a misspelt option, key or group, an override it cannot parse) over several lines
with advice to set ``HYDRA_FULL_ERROR=1``, and exits with status 1 as for a bug. Here Hydra raises them instead
and :func:`melanoma_lab.config.messages.describe` says what is wrong in one line; a bug keeps its traceback (exit
status 1). With ``HYDRA_FULL_ERROR=1`` set by the user, every error keeps its full traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

from melanoma_lab.config.compose import with_conf_dir
from melanoma_lab.config.messages import describe
from melanoma_lab.errors import USER_ERROR_STATUS

FULL_ERROR = "HYDRA_FULL_ERROR"


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
