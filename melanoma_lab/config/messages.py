"""Hydra's composition errors as one line a user can act on: :func:`describe`.

Hydra reports a misspelt option, key or group over several lines, with its config search path, and for a misspelt
key advises ``+key=value``, which adds the typo as a new key. :func:`describe` names the override, says what is
wrong, and lists the nearest names that exist (never one of the internal ``_schema``/``_common`` configs).
"""

from __future__ import annotations

import difflib
import re

from hydra.errors import (ConfigCompositionException, MissingConfigException, OverrideParseException,
                          SearchPathException)

from melanoma_lab.errors import UserError

GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic/"
USER_ERRORS = (UserError, ConfigCompositionException, OverrideParseException, SearchPathException)


def visible(names) -> list[str]:
    """Names a user may choose: not the internal ones (``_schema``, ``_sgd_schema``, ``_common``)."""
    return [str(name) for name in names if not str(name).startswith("_")]


def nearest(name: str, names: list[str]) -> list[str]:
    """``names``, the ones closest to ``name`` first (at most 3 of those), then the rest in their order."""
    near = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    return near + [n for n in names if n not in near]


def _lines(text: str) -> list[str]:
    """The lines of an error message that say what is wrong (not Hydra's search path, links or advice)."""
    kept = []
    for line in str(text).splitlines():
        line = line.strip()
        if line.startswith(("Config search path", "provider=")):
            break
        if line.startswith(("See https://", "To append to your config", "Error parsing override")):
            continue
        if line and not line.startswith(("full_key:", "object_type=", "reference_type=")):
            kept.append(line)
    return kept


def _missing_config(error: MissingConfigException) -> str:
    group, _, name = (error.missing_cfg_file or "").rpartition("/")
    options = visible(error.options or [])
    if not options:
        return " ".join(_lines(str(error))[:1]) or str(error)
    where = f"group {group}" if group else "the config folder"
    return f"{group + '=' if group else ''}{name}: no config {name!r} in {where}; did you mean " \
           f"{', '.join(nearest(name, options))}?"


def _unknown_key(error: ConfigCompositionException, override: str) -> str:
    cause = error.__cause__
    key = override.split("=", 1)[0].lstrip("+~")
    parent, _, leaf = key.rpartition(".")
    node = getattr(cause, "parent_node", None)
    names = [n for n in visible(node.keys()) if n != "hydra"] if hasattr(node, "keys") else []
    near = difflib.get_close_matches(leaf, names, n=1, cutoff=0.6)
    prefix = f"{parent}." if parent else ""
    hint = f"did you mean {' or '.join(prefix + n for n in near)}?" if near else \
        f"{parent or 'the config'} has {', '.join(names)}" if names else "no such key"
    what = f"{parent} has no key {leaf!r}" if parent else f"no config group or key {leaf!r}"
    return f"{override}: {what} ({hint})"


def describe(error: BaseException) -> str | None:
    """One line saying what is wrong with what the user asked for, or None when ``error`` is not a user error
    (a bug keeps its traceback)."""
    if not isinstance(error, USER_ERRORS):
        return None
    if isinstance(error, UserError):
        return " ".join(str(error).split())
    if isinstance(error, OverrideParseException):
        reason = "; ".join(_lines(error.message)) or "not key=value"
        return f"cannot parse override {error.override!r}: {reason} (syntax: {GRAMMAR})"
    if isinstance(error, MissingConfigException):
        return _missing_config(error)
    message = str(error)
    unknown = re.match(r"Could not override '([^']+)'", message)
    if unknown:
        override = next((line.split(" use ", 1)[1].lstrip("+") for line in message.splitlines()
                         if line.startswith("To append to your config use ")), unknown.group(1))
        return _unknown_key(error, override)
    lines = _lines(message) + _lines(str(error.__cause__ or ""))
    return "; ".join(lines) or type(error).__name__
