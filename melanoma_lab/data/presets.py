"""``make data DATASET=ham10000|isic2019``: fetch a CSV-manifest dataset, unpack it and check its layout.

Every file of a preset is downloaded (or taken from ``--archive``: local files, or URLs), zips are extracted (a zip
inside them too, e.g. the image parts inside Harvard Dataverse's bundle), image zips without their own top folder go
into the folder the dataset config expects, and the result is moved to ``--dest`` only when every file the config
reads is there (never a half-built dataset folder).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from melanoma_lab.data.archives import ArchiveError, download, unzip

ISIC_2019 = "https://isic-challenge-data.s3.amazonaws.com/2019"
HAM10000_DOI = "doi:10.7910/DVN/DBW86T"  # Harvard Dataverse; the whole dataset as one zip of its original files
HAM10000_BUNDLE = ("https://dataverse.harvard.edu/api/access/dataset/:persistentId/"
                   f"?persistentId={HAM10000_DOI}&format=original")


@dataclass(frozen=True)
class Preset:
    urls: tuple[str, ...]  # what `make data` downloads
    required: tuple[str, ...]  # files and folders (relative to the dataset folder) that conf/dataset/<name>.yaml reads
    folders: dict[str, str] = field(default_factory=dict)  # image zip -> the folder its images belong in


PRESETS = {
    "ham10000": Preset(
        urls=(HAM10000_BUNDLE,),
        required=("HAM10000_metadata.csv", "HAM10000_images_part_1", "HAM10000_images_part_2"),
        folders={"HAM10000_images_part1.zip": "HAM10000_images_part_1",
                 "HAM10000_images_part2.zip": "HAM10000_images_part_2",
                 "HAM10000_images_part_1.zip": "HAM10000_images_part_1",
                 "HAM10000_images_part_2.zip": "HAM10000_images_part_2"}),
    "isic2019": Preset(
        urls=tuple(f"{ISIC_2019}/{name}" for name in ("ISIC_2019_Training_Input.zip",
                                                      "ISIC_2019_Training_GroundTruth.csv",
                                                      "ISIC_2019_Training_Metadata.csv")),
        required=("ISIC_2019_Training_GroundTruth.csv", "ISIC_2019_Training_Metadata.csv", "ISIC_2019_Training_Input")),
}


def _name(source: str) -> str:
    """The file name of a URL or path (Dataverse's bundle URL has none: dataverse_files.zip)."""
    tail = source.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
    return tail if "." in tail else "dataverse_files.zip"


def _place(file: Path, staging: Path, preset: Preset) -> None:
    """Unpack a zip (into its preset folder when its members have no top folder of that name); copy other files."""
    if file.suffix.lower() != ".zip":
        shutil.copy2(file, staging / file.name)
        return
    folder = preset.folders.get(file.name)
    target = staging / folder if folder else staging
    target.mkdir(parents=True, exist_ok=True)
    unzip(file, target)
    if folder and (target / folder).is_dir():  # the zip had its own top folder of that name
        for item in list((target / folder).iterdir()):
            os.replace(item, target / item.name)
        (target / folder).rmdir()
    for inner in sorted(target.rglob("*.zip")):  # zips inside the zip (e.g. the image parts of a bundle)
        _place(inner, staging, preset)
        inner.unlink()


def _dataset_folder(staging: Path, preset: Preset) -> Path:
    """The folder holding the preset's first required file (the bundle may nest it); checks all are there."""
    found = sorted(staging.rglob(preset.required[0]), key=lambda p: len(p.parts))
    folder = found[0].parent if found else staging
    missing = [name for name in preset.required if not (folder / name).exists()]
    if missing:
        raise ArchiveError(f"the downloaded files lack {', '.join(missing)} (found: "
                           f"{', '.join(sorted(p.name for p in folder.iterdir())) or 'nothing'}); fetch them by hand "
                           "and pass them with --archive FILE (repeatable)")
    return folder


def fetch(name: str, dest: Path, sources: list[str] | None = None) -> Path:
    """Build the ``name`` preset's dataset folder at ``dest`` from ``sources`` (files or URLs; default: its URLs)."""
    preset = PRESETS[name]
    if dest.exists():
        raise FileExistsError(f"{dest} already exists; remove it first to fetch {name} again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=dest.parent))
    try:
        staging = work / "dataset"
        staging.mkdir()
        record = []
        for source in sources or list(preset.urls):
            file = (download(source, work / _name(source), what=_name(source), registry=dest.parent)
                    if "://" in source else Path(source))  # hashes recorded beside the dataset folders
            record.append({"source": source, "sha256": hashlib.sha256(file.read_bytes()).hexdigest()})
            _place(file, staging, preset)
        folder = _dataset_folder(staging, preset)
        (folder / "SOURCE.json").write_text(json.dumps(record, indent=2))
        os.replace(folder, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def fetch_main(name: str, dest: Path, sources: list[str] | None) -> int:
    """The command line of :func:`fetch` (``melanoma-lab data --dataset NAME``)."""
    if name not in PRESETS:
        print(f"error: unknown dataset {name!r}: isic9, {', '.join(PRESETS)}", file=sys.stderr)
        return 1
    if all((dest / required).exists() for required in PRESETS[name].required):
        print(f"{dest} already holds {name}: nothing to do")
        return 0
    try:
        print(f"{name} ready in {fetch(name, dest, sources)} (python -m melanoma_lab dataset={name} "
              f"dataset.root={dest})")
    except (ConnectionError, ArchiveError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
