"""What produced a run: the code version, package versions and the runtime (precision, backend, device, cores).

``code_version()`` is part of every run's identity (``tracking.skip_finished`` reuses a run only when config,
data AND code match). It describes the checkout the package is imported from, not the working directory:
``<commit>`` for a clean git checkout, ``<commit>+<hash>`` when ``melanoma_lab/`` or ``conf/`` hold uncommitted
changes (diffs and untracked files); outside a git checkout ``<package version>+src-<hash of its sources>``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from melanoma_lab.tracking.lockfile import lock_tags

log = logging.getLogger(__name__)
PACKAGE_DIR = Path(__file__).resolve().parents[1]
CODE_FOLDERS = (PACKAGE_DIR.name, "conf")  # the package and its Hydra configs (:data:`melanoma_lab.config.compose.CONF_DIR`)
TRACKED_PACKAGES = ["melanoma-lab", "tensorflow-cpu", "tensorflow", "jax", "jaxlib", "torch", "keras", "keras-tuner",
                    "mlflow", "hydra-core", "Augmentor", "numpy", "pandas", "scikit-learn", "pillow"]
SHORT = 12


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in TRACKED_PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            continue
    return versions


def _git(root: Path, *args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, check=True, timeout=10).stdout


def git_state(root: Path) -> dict[str, str]:
    """Commit and dirty flag of the git checkout at ``root`` ("unknown" outside one)."""
    try:
        commit = _git(root, "rev-parse", "HEAD").decode().strip()
        dirty = _git(root, "status", "--porcelain", "--untracked-files=no").strip()
        return {"git_commit": commit, "git_dirty": str(bool(dirty)).lower()}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": "unknown", "git_dirty": "unknown"}


def _digest(root: Path, names: list[str], extra: bytes = b"") -> str:
    """Short hash of the files ``names`` (paths relative to ``root``, with their content) and ``extra``."""
    digest = hashlib.sha256(extra)
    for name in sorted(names):
        digest.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    return digest.hexdigest()[:SHORT]


def git_code_version(root: Path) -> str | None:
    """``<commit>[+<hash of uncommitted changes>]`` of the code folders when ``root`` is the top of a git
    checkout; None otherwise (not a checkout, no commit yet, or git missing)."""
    try:
        if Path(_git(root, "rev-parse", "--show-toplevel").decode().strip()).resolve() != root.resolve():
            return None  # e.g. a non-editable install inside a venv that lives in some repository
        commit = _git(root, "rev-parse", "HEAD").decode().strip()
        changes = _git(root, "diff", "HEAD", "--binary", "--", *CODE_FOLDERS)
        untracked = _git(root, "ls-files", "--others", "--exclude-standard", "-z", "--", *CODE_FOLDERS)
    except (OSError, subprocess.SubprocessError):
        return None
    names = [name for name in untracked.decode().split("\0") if name]
    if not changes and not names:
        return commit[:SHORT]
    return f"{commit[:SHORT]}+{_digest(root, names, changes)}"


def source_code_version(package_dir: Path) -> str:
    """``<package version>+src-<hash>`` of the package's sources and of the ``conf/`` beside it, if any."""
    root = package_dir.parent
    names = [str(path.relative_to(root)) for folder in (package_dir, root / "conf") if folder.is_dir()
             for path in folder.rglob("*") if path.is_file() and path.suffix in (".py", ".yaml")]
    try:
        release = version("melanoma-lab")
    except PackageNotFoundError:
        release = "unknown"
    return f"{release}+src-{_digest(root, names)}"


@functools.cache
def code_version() -> str:
    """The version of the code this process runs (computed once per process)."""
    found = git_code_version(PACKAGE_DIR.parent) or source_code_version(PACKAGE_DIR)
    log.debug("code version %s (package imported from %s)", found, PACKAGE_DIR)
    return found


def provenance_tags() -> dict[str, str]:
    """Tags of every run: code version, git state of the package's checkout, package versions and the hash of
    the lock file the environment was installed from."""
    return {"code_version": code_version(), **git_state(PACKAGE_DIR.parent), **lock_tags(),
            **{f"version.{k}": v for k, v in package_versions().items()}}


def cpu_cores() -> int:
    """The cores this process may use (its CPU affinity where the OS tells it, else all of them)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def device_name() -> str:
    """The GPU(s) the Keras backend trains on (name, ``N x name`` for several), else the CPU model."""
    from melanoma_lab.runtime import runtime

    gpus = runtime().accelerators()
    if not gpus:
        return cpu_model()
    return gpus[0].name if len(gpus) == 1 else f"{len(gpus)} x {gpus[0].name}"


def runtime_tags(precision: str) -> dict[str, str]:
    """What resolved when the run started: the dtype policy actually set, backend, device and cores."""
    import keras

    return {"runtime.precision": precision, "runtime.keras_backend": keras.backend.backend(),
            "runtime.device": device_name(), "runtime.cpu_cores": str(cpu_cores())}
