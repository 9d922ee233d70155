"""The lock file an environment was installed from (``make install``: requirements/<tf>-<extras>.txt) and the
check that the installed packages are exactly its pins.

    melanoma-lab check-lock [LOCK]    (default: the copy ``make install`` keeps in the venv)

Exits 1 listing every locked package whose installed version differs (or that is missing) and when both
``tensorflow`` and ``tensorflow-cpu`` are installed (two TensorFlows overwrite each other's files).
"""

from __future__ import annotations

import hashlib
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from melanoma_lab.errors import UserError

INSTALLED_LOCK = Path(sys.prefix) / "melanoma-lab.lock"  # written by `make install`
TENSORFLOWS = ("tensorflow", "tensorflow-cpu")
SHORT = 12


def lock_pins(text: str) -> dict[str, str]:
    """``{canonical name: version}`` of the ``name==version`` lines of a pip/uv lock whose markers hold here."""
    pins = {}
    for line in text.replace("\\\n", " ").splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        try:
            requirement = Requirement(line.split(" --hash", 1)[0].strip())
        except InvalidRequirement as error:
            raise UserError(f"Cannot read the lock line {line!r}: {error}. Regenerate the lock with `make lock`.")
        pinned = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        if pinned and (requirement.marker is None or requirement.marker.evaluate()):
            pins[canonicalize_name(requirement.name)] = pinned[0]
    return pins


def installed_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def mismatches(pins: dict[str, str], installed: dict[str, str | None]) -> list[str]:
    """One line per pinned package whose installed version (None: not installed) is not its pin."""
    found = {canonicalize_name(name): value for name, value in installed.items()}
    return [f"{name}: locked {pin}, installed {found.get(name) or 'nothing'}" for name, pin in sorted(pins.items())
            if found.get(name) is None or Version(found[name]) != Version(pin)]


def tensorflow_conflict(installed: dict[str, str | None]) -> str | None:
    both = [name for name in TENSORFLOWS if installed.get(name)]
    if len(both) < 2:
        return None
    return (f"both {' and '.join(both)} are installed: they overwrite each other's files. Recreate the environment "
            "with one TensorFlow extra: `rm -rf .venv && make install` (TF=cpu) or `make install TF=cuda`.")


def check(lock: Path) -> list[str]:
    """Every way this environment differs from ``lock`` (empty: it matches)."""
    if not lock.is_file():
        raise UserError(f"No lock file {lock}: install with `make install` (it keeps a copy in the venv) or name one.")
    pins = lock_pins(lock.read_text())
    installed = {name: installed_version(name) for name in set(pins) | set(TENSORFLOWS)}
    conflict = tensorflow_conflict(installed)
    return mismatches(pins, installed) + ([conflict] if conflict else [])


def lock_tags(lock: Path | None = None) -> dict[str, str]:
    """The run tag naming the lock this environment was installed from: its SHA-256 (12 hex) or "none"."""
    lock = lock or INSTALLED_LOCK
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()[:SHORT] if lock.is_file() else "none"
    return {"lock_sha256": digest}
