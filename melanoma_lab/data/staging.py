"""Caches written as a whole or not at all: build a folder beside its final place, then rename it there."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def staged_folder(target: Path, done_marker: str, kind: str) -> Iterator[Path]:
    """A fresh staging folder that becomes ``target`` (atomically) when the block succeeds.

    ``done_marker`` is a file or folder that a complete ``target`` contains: when a concurrent process published
    ``target`` first, its copy is kept and this one dropped. A failing block leaves no trace. The staging folder
    is hidden and named after ``kind`` (``.<kind>-...``) beside ``target``.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{kind}-", dir=target.parent))
    try:
        yield staging
        try:
            os.replace(staging, target)
        except OSError:  # a concurrent run finished the same folder first
            if not (target / done_marker).exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_atomically(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` as a whole or not at all: a hidden temporary file beside it, then
    renamed over it. A reader never sees half a file, and a failed write leaves the old file and no temporary one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data.encode() if isinstance(data, str) else data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
