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
