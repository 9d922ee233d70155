"""Scan a class-per-folder image dataset into a table of files.

Layout: ``<root>/Train/<class>/<image>`` and optionally ``<root>/Test/<class>/<image>``.
The table has one row per file: ``path``, ``label``, ``split`` (train | test), ``sha256``, ``source``
(original | augmentor) and ``parent`` (for generated images: the training image they derive from). Sources that
know which images show one lesion (or patient) add ``group_id`` (columns named in :mod:`melanoma_lab.data.columns`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from melanoma_lab.data.columns import COLUMNS, GROUP_COLUMN
from melanoma_lab.errors import UserError

SPLIT_FOLDERS = {"train": "Train", "test": "Test"}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class DatasetNotFoundError(UserError, FileNotFoundError):
    """The dataset folder is missing or does not have the expected layout."""


def missing_data_message(root: Path) -> str:
    return (
        f"No dataset found at {root}.\n"
        "Expected layout: <root>/Train/<class name>/*.jpg (and optionally <root>/Test/<class name>/*.jpg).\n"
        "Two ways out:\n"
        "  1. get the ISIC 9-class data: `make data` (needs internet), or point to a copy you have:\n"
        "     python -m melanoma_lab dataset.root=/path/to/isic9   (or export MELANOMA_LAB_DATA=/path/to/isic9)\n"
        "  2. use the built-in synthetic lesions: python -m melanoma_lab dataset=synthetic"
    )


@dataclass
class Catalog:
    """Files of a dataset plus what the scan found that is not a usable image file."""

    root: Path
    classes: list[str]
    files: pd.DataFrame
    unexpected: list[str] = field(default_factory=list)
    empty_class_folders: list[str] = field(default_factory=list)

    def split(self, name: str) -> pd.DataFrame:
        return self.files[self.files["split"] == name].reset_index(drop=True)

    def class_counts(self, split: str = "train") -> dict[str, int]:
        counts = self.split(split)["label"].value_counts()
        return {name: int(counts.get(name, 0)) for name in self.classes}


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def scan(root: str | Path, extensions: list[str]) -> Catalog:
    """Scan ``root``; raise :class:`DatasetNotFoundError` with the way out if it is not a dataset."""
    root = Path(root).expanduser().resolve()
    train_dir = root / SPLIT_FOLDERS["train"]
    if not train_dir.is_dir():
        raise DatasetNotFoundError(missing_data_message(root))
    classes = sorted(d.name for d in train_dir.iterdir() if d.is_dir())
    if not classes:
        raise DatasetNotFoundError(f"{train_dir} has no class folders.\n" + missing_data_message(root))
    allowed = {e.lower() for e in extensions}
    rows: list[dict] = []
    unexpected: list[str] = []
    empty: list[str] = []
    for split, folder in SPLIT_FOLDERS.items():
        split_dir = root / folder
        if not split_dir.is_dir():
            continue
        for entry in sorted(split_dir.iterdir()):
            if not entry.is_dir():
                unexpected.append(str(entry))
                continue
            if entry.name not in classes:
                unexpected.append(str(entry))
                continue
            images = 0
            for path in sorted(entry.iterdir()):
                if not _utf8(path.name):
                    unexpected.append(f"{ascii(str(path))} (file name is not UTF-8: rename it)")
                    continue
                if not path.is_file() or path.suffix.lower() not in allowed:
                    unexpected.append(str(path))  # also symlink loops and broken links
                    continue
                rows.append({"path": str(path), "label": entry.name, "split": split,
                             "sha256": file_sha256(path), "source": "original", "parent": ""})
                images += 1
            if images == 0:
                empty.append(str(entry))
    files = pd.DataFrame(rows, columns=COLUMNS)
    if files[files["split"] == "train"].empty:
        raise DatasetNotFoundError(f"{train_dir} has class folders but no images.\n" + missing_data_message(root))
    return Catalog(root=root, classes=classes, files=files, unexpected=unexpected, empty_class_folders=empty)


def fingerprint(files: pd.DataFrame) -> str:
    """A short hash of the file list and contents: equal fingerprints mean the same data and labels (and lesion
    groups, where the source has them)."""
    digest = hashlib.sha256()
    ordered = files.sort_values(["split", "label", "path"])
    groups = ordered[GROUP_COLUMN] if GROUP_COLUMN in ordered else [""] * len(ordered)
    for row, group in zip(ordered.itertuples(), groups):
        line = f"{row.split}|{row.label}|{Path(row.path).name}|{row.sha256}" + (f"|{group}" if group else "")
        digest.update(f"{line}\n".encode())
    return digest.hexdigest()[:16]
