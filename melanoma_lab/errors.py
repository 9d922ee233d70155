"""Errors a user can fix (a config value, a missing dataset, an unreachable tracking store).

The command line prints their message alone, without a traceback, and exits with status
:data:`USER_ERROR_STATUS`; any other exception is a bug and keeps its traceback. Pure Python: every
module may import it, also before TensorFlow loads.
"""

from __future__ import annotations

USER_ERROR_STATUS = 2


class UserError(Exception):
    """A mistake in what the user asked for or provided; the message says what to do."""


class ConfigError(UserError, ValueError):
    """A config value is out of its allowed range; the message names the key."""
