"""``make data``: download the ISIC 9-class archive, verify it, and extract it atomically.

    melanoma-lab data [--dest data/isic9] [--archive FILE] [--url URL]
    melanoma-lab data --dataset ham10000|isic2019 [--dest DIR] [--archive FILE_OR_URL ...]

``--archive`` skips the download (a zip you fetched yourself, e.g. from Kaggle
``nodoubttome/skin-cancer9-classesisic``). The extracted folder is the one holding ``Train/``.
``--dataset ham10000|isic2019`` fetches a CSV-manifest preset instead (:mod:`melanoma_lab.data.presets`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from melanoma_lab.data.archives import ArchiveError, unzip

GOOGLE_DRIVE_ID = "1xLfSQUGDl8ezNNbUkpuHOYvSpTyxVhCs"
DEFAULT_URL = f"https://drive.usercontent.google.com/download?id={GOOGLE_DRIVE_ID}&export=download&confirm=t"
MIN_CLASSES = 2


def verify_archive(archive: Path) -> str:
    """Check the zip's integrity and layout; return the member prefix of the folder that holds ``Train/``."""
    try:
        with zipfile.ZipFile(archive) as zf:
            broken = zf.testzip()
            if broken is not None:
                raise ArchiveError(f"{archive}: member {broken} is corrupt (CRC mismatch); download it again")
            names = zf.namelist()
    except zipfile.BadZipFile as error:
        raise ArchiveError(f"{archive} is not a zip archive: {error}") from error
    train_dirs = sorted({name[: name.index("Train/")] for name in names
                         if name.startswith("Train/") or "/Train/" in name})
    if train_dirs:
        prefix = train_dirs[0]  # "" or "<folder>/"
        inside = [name[len(prefix) + len("Train/"):] for name in names if name.startswith(prefix + "Train/")]
        classes = {rest.split("/")[0] for rest in inside if "/" in rest.strip("/")}
        if len(classes) < MIN_CLASSES:
            raise ArchiveError(f"{archive}: Train/ holds fewer than {MIN_CLASSES} class folders with images")
        return prefix.rstrip("/")
    raise ArchiveError(f"{archive} has no Train/ folder: expected <folder>/Train/<class>/*.jpg")


def extract(archive: Path, dest: Path) -> Path:
    """Extract the dataset folder of ``archive`` to ``dest`` atomically (never a half-extracted ``dest``)."""
    prefix = verify_archive(archive)
    if dest.exists():
        raise FileExistsError(f"{dest} already exists; remove it first to extract again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest.parent))
    try:
        unzip(archive, staging)
        source = staging / prefix if prefix else staging
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        (source / "SOURCE.json").write_text(json.dumps({"archive": archive.name, "sha256": digest}, indent=2))
        os.replace(source, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest
