"""CSV-manifest dataset sources: a table of image ids (or paths), labels and optionally lesion ids and splits.

``csv_manifest`` reads any such CSV (``conf/dataset/csv.yaml``; ``conf/dataset/ham10000.yaml`` is HAM10000's
``HAM10000_metadata.csv`` through it). ``isic2019`` reads the ISIC 2019 training set, whose labels are one-hot
columns (``ISIC_2019_Training_GroundTruth.csv``) and whose lesion ids are in ``ISIC_2019_Training_Metadata.csv``.
Images of one group (lesion or patient id; an empty id is a group of its own) stay on one side of every split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from melanoma_lab.data.catalog import Catalog, DatasetNotFoundError, file_sha256
from melanoma_lab.data.columns import COLUMNS, GROUP_COLUMN
from melanoma_lab.errors import UserError

SPLITS = ("train", "test")


class ManifestError(UserError, ValueError):
    """A manifest CSV lacks a configured column or holds values the lab cannot use."""


def read_manifest(path: Path) -> pd.DataFrame:
    """A manifest CSV as text columns (empty cells: ''); :class:`DatasetNotFoundError` when it is missing."""
    if not path.is_file():
        raise DatasetNotFoundError(f"No manifest at {path}.\nPoint dataset.root at the folder holding it (and the "
                                   "images), or set dataset.source.manifest; `make data DATASET=<name>` downloads the "
                                   "ham10000 and isic2019 presets.")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _require(table: pd.DataFrame, columns: dict[str, str | None], manifest: Path) -> None:
    missing = [f"dataset.source.{key}={name!r}" for key, name in columns.items() if name and name not in table]
    if missing:
        raise ManifestError(f"{manifest} has no column for {', '.join(missing)}; its columns are "
                            f"{', '.join(table.columns)}. Set the dataset.source key(s) to one of them.")


def _locate(root: Path, names: pd.Series, image_dirs: tuple[str, ...], extension: str) -> list[Path | None]:
    """The file of each image id (or relative path): the first of ``image_dirs`` holding ``<name><extension>``
    (image_dirs relative to ``root``, or absolute)."""
    folders = [root / folder for folder in image_dirs]
    listed = [set(p.name for p in folder.iterdir()) if folder.is_dir() else set() for folder in folders]
    found: list[Path | None] = []
    for name in names:
        file_name = f"{name}{extension}"
        if "/" in file_name:  # a relative path (or an absolute one)
            found.append(next((folder / file_name for folder in folders if (folder / file_name).is_file()), None))
            continue
        found.append(next((folder / file_name for folder, names_in in zip(folders, listed) if file_name in names_in),
                          None))
    return found


def manifest_catalog(root: Path, images: pd.Series, labels: pd.Series, groups: pd.Series | None,
                     splits: pd.Series | None, image_dirs: tuple[str, ...], extension: str, manifest: Path,
                     metadata: pd.DataFrame | None = None) -> Catalog:
    """A catalog from manifest columns; rows whose image file is missing are listed in ``unexpected``. The
    columns of ``metadata`` (age, sex, site...) are kept as ``meta_<name>`` (:mod:`melanoma_lab.evaluation.subgroups`)."""
    if splits is None:
        splits = pd.Series("train", index=images.index)
    splits = splits.str.strip().str.lower()
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise ManifestError(f"{manifest}: the split column holds {unknown}; use train or test (validation is split "
                            "off train by the lab), or set dataset.source.split_column=null")
    if (labels.str.strip() == "").any():
        raise ManifestError(f"{manifest}: {int((labels.str.strip() == '').sum())} rows have no label; remove them")
    paths = _locate(root, images, image_dirs, extension)
    found = np.array([p is not None for p in paths])
    unexpected = [f"{name}: listed in {manifest.name} but no file {name}{extension} in {', '.join(image_dirs)}"
                  for name, ok in zip(images, found) if not ok]
    if not found.any():
        raise DatasetNotFoundError(f"None of the {len(images)} images listed in {manifest} is in "
                                   f"{', '.join(str(root / d) for d in image_dirs)} (as <id>{extension}).\nPoint "
                                   "dataset.root at the dataset folder, or set dataset.source.image_dirs / extension.")
    classes = sorted(set(labels[found & (splits == "train").to_numpy()]))
    if not classes:
        raise DatasetNotFoundError(f"{manifest}: no image of the train split was found; nothing to train on")
    foreign = found & (splits == "test").to_numpy() & ~labels.isin(classes).to_numpy()
    unexpected += [f"{path}: test label {label!r} is no class of train" for path, label, bad
                   in zip(paths, labels, foreign) if bad]
    keep = found & ~foreign
    files = pd.DataFrame({"path": [str(p) for p, k in zip(paths, keep) if k], "label": labels[keep].to_numpy(),
                          "split": splits[keep].to_numpy()})
    files["sha256"] = [file_sha256(Path(p)) for p in files["path"]]
    files["source"], files["parent"] = "original", ""
    files[GROUP_COLUMN] = groups[keep].str.strip().to_numpy() if groups is not None else ""
    extra = [] if metadata is None else [f"meta_{name}" for name in metadata.columns]
    for name in ([] if metadata is None else metadata.columns):
        files[f"meta_{name}"] = metadata[name][keep].fillna("").astype(str).to_numpy()
    return Catalog(root=root, classes=classes, files=files[COLUMNS + [GROUP_COLUMN] + extra], unexpected=unexpected)


def csv_manifest(root: str, manifest: str, image_column: str, label_column: str, group_column: str | None = None,
                 split_column: str | None = None, image_dirs: tuple[str, ...] = (".",),
                 extension: str = "", metadata_columns: tuple[str, ...] = ()) -> Catalog:
    """Images named by ``image_column`` (an id or a relative path, found as ``<id><extension>`` in the first of
    ``image_dirs`` that has it, relative to ``root``), labelled by ``label_column``; ``group_column`` (lesion or
    patient id) keeps a group's images on one side of every split; ``split_column`` (train | test) marks a held-out
    Test set; ``metadata_columns`` (e.g. age, sex, localization) are kept for performance by subgroup."""
    base = Path(root).expanduser().resolve()
    path = base / manifest
    table = read_manifest(path)
    _require(table, {"image_column": image_column, "label_column": label_column, "group_column": group_column,
                     "split_column": split_column} | {f"metadata_columns ({c})": c for c in metadata_columns}, path)
    return manifest_catalog(base, table[image_column], table[label_column],
                            table[group_column] if group_column else None,
                            table[split_column] if split_column else None, tuple(image_dirs), extension, path,
                            table[list(metadata_columns)] if metadata_columns else None)


def isic2019(root: str, ground_truth: str = "ISIC_2019_Training_GroundTruth.csv",
             metadata: str | None = "ISIC_2019_Training_Metadata.csv", image_dir: str = "ISIC_2019_Training_Input",
             extension: str = ".jpg",
             metadata_columns: tuple[str, ...] = ("age_approx", "sex", "anatom_site_general")) -> Catalog:
    """The ISIC 2019 training set: the label of each ``image`` is its one-hot column (MEL, NV, BCC, AK, BKL, DF,
    VASC, SCC, UNK); ``lesion_id`` and the ``metadata_columns`` (for performance by subgroup) come from
    ``metadata`` (images without a lesion id are groups of their own)."""
    base = Path(root).expanduser().resolve()
    truth_path = base / ground_truth
    truth = read_manifest(truth_path)
    _require(truth, {"ground_truth (image column)": "image"}, truth_path)
    columns = [c for c in truth.columns if c != "image"]
    try:
        one_hot = truth[columns].astype(float).to_numpy()
    except ValueError as error:
        raise ManifestError(f"{truth_path}: the class columns {columns} must be 0/1 numbers ({error})") from error
    unlabelled = one_hot.max(axis=1) <= 0
    if unlabelled.any():
        raise ManifestError(f"{truth_path}: {int(unlabelled.sum())} rows have no class set to 1 (e.g. "
                            f"{truth['image'][unlabelled].iloc[0]}); remove them")
    labels = pd.Series(np.array(columns)[one_hot.argmax(axis=1)], index=truth.index)
    groups, extra = None, None
    if metadata:
        meta_path = base / metadata
        meta = read_manifest(meta_path)
        _require(meta, {"metadata (image column)": "image", "metadata (lesion_id column)": "lesion_id"}
                 | {f"metadata_columns ({c})": c for c in metadata_columns}, meta_path)
        groups = truth["image"].map(dict(zip(meta["image"], meta["lesion_id"]))).fillna("")
        by_image = meta.set_index("image")
        extra = pd.DataFrame({c: truth["image"].map(by_image[c]).fillna("") for c in metadata_columns},
                             index=truth.index) if metadata_columns else None
    return manifest_catalog(base, truth["image"], labels, groups, None, (image_dir,), extension, truth_path, extra)
