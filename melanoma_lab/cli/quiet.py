"""What a command prints: the project's own messages, not its libraries' start-up chatter.

:func:`quiet_output` runs first in :func:`melanoma_lab.cli.main`, before a command imports TensorFlow or MLflow
(both read these variables when they are imported), and sets only a variable the user has not set:

- ``TF_CPP_MIN_LOG_LEVEL=2``: TensorFlow's and absl's C++ INFO and WARNING lines are off (oneDNN "custom
  operations are on", the CPU feature and CUDA start-up lines, "All log messages before absl::InitializeLog()");
  errors still print. ``TF_ENABLE_ONEDNN_OPTS`` is left alone: it changes the numbers, not what is printed.
- ``MLFLOW_LOGGING_LEVEL=WARNING``: MLflow's INFO lines (database set-up, the system-metrics monitor starting and
  stopping, input-example validation).
- ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false`` unless stderr is a terminal: MLflow's artifact download and
  upload bars (in a log file, lines of carriage returns).

``trainer.verbose=3`` (:data:`LIBRARY_LOGS`; Keras prints as for 2) on the command line, also among a sweep's
values, leaves the libraries' own log levels as they are; a variable the user set always wins.

TensorFlow 2.21 logs its oneDNN line through absl before absl is initialised, and ``TF_CPP_MIN_LOG_LEVEL`` does
not reach those lines (a TensorFlow bug: tensorflow/tensorflow#100442); :class:`QuietTensorFlowImport` applies the
level in effect to the absl lines ``import tensorflow`` prints, and passes everything else on.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from typing import Any, MutableMapping

LIBRARY_LOGS = 3  # trainer.verbose at which TensorFlow's and MLflow's own log lines are shown too
QUIET_LOGS = {"TF_CPP_MIN_LOG_LEVEL": "2", "MLFLOW_LOGGING_LEVEL": "WARNING"}
NO_PROGRESS_BARS = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
_VERBOSE = re.compile(r"^\+{0,2}trainer\.verbose=(.*)$")
ABSL_BANNER = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
# absl's line prefix, e.g. "I0000 00:00:1796550543.929631   11650 port.cc:153] "
_ABSL_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+ +\d+ [^ \]]+:\d+\] ")
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}


def requested_verbosity(argv: list[str]) -> int | None:
    """The highest ``trainer.verbose`` the command line asks for (a sweep's list or range included), else None."""
    values = [int(v) for arg in argv if (match := _VERBOSE.match(arg)) for v in re.findall(r"\d+", match.group(1))]
    return max(values, default=None)


def quiet_libraries(argv: list[str], environ: MutableMapping[str, str] = os.environ,
                    terminal: bool | None = None) -> dict[str, str]:
    """Set the variables of the module docstring in ``environ`` where unset; returns those it set."""
    terminal = sys.stderr.isatty() if terminal is None else terminal
    wanted = {} if (requested_verbosity(argv) or 0) >= LIBRARY_LOGS else dict(QUIET_LOGS)
    if not terminal:
        wanted |= NO_PROGRESS_BARS
    chosen = {name: value for name, value in wanted.items() if name not in environ}
    environ.update(chosen)
    return chosen


def kept_lines(text: str, min_level: int) -> str:
    """``text`` without absl's pre-initialisation banner and its log lines below ``min_level`` (0 INFO .. 3 FATAL,
    TensorFlow's ``TF_CPP_MIN_LOG_LEVEL``); a line of another format is kept, as are the lines that continue a kept
    absl line."""
    kept, keep = [], True
    for line in text.splitlines(keepends=True):
        if line.rstrip("\n") == ABSL_BANNER:
            keep = False
            continue
        match = _ABSL_LINE.match(line)
        if match:
            keep = _SEVERITY[match.group(1)] >= min_level
        elif not line.startswith((" ", "\t")) and not keep and line.strip():
            keep = True  # not a continuation (indented) of a dropped absl line
        if keep:
            kept.append(line)
    return "".join(kept)


class QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` once, for a loader whose import runs with file descriptor 2 in a temporary file, then
    writes back what :func:`kept_lines` keeps (C++ writes to the descriptor, not to ``sys.stderr``)."""

    def __init__(self, min_level: int):
        self.min_level = min_level

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _FilteredLoader(spec.loader, self.min_level)
        return spec


class _FilteredLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, min_level: int):
        self.loader, self.min_level = loader, min_level

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                self.loader.exec_module(module)
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                captured.seek(0)
                sys.stderr.write(kept_lines(captured.read().decode(errors="replace"), self.min_level))
                sys.stderr.flush()


def quiet_tensorflow_import(environ: MutableMapping[str, str] = os.environ) -> None:
    """Filter ``import tensorflow``'s absl lines by the ``TF_CPP_MIN_LOG_LEVEL`` in effect (from now on, once)."""
    level = environ.get("TF_CPP_MIN_LOG_LEVEL", "0")
    if "tensorflow" in sys.modules or not level.isdigit() or int(level) < 1:
        return
    if not any(isinstance(finder, QuietTensorFlowImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, QuietTensorFlowImport(int(level)))


def quiet_output(argv: list[str]) -> None:
    """What the command line does first (:func:`melanoma_lab.cli.main`): the variables, then the import filter."""
    quiet_libraries(argv)
    quiet_tensorflow_import()
