"""Tiny datasets in the exact published CSV layouts of HAM10000 and ISIC 2019, with synthetic lesion images."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from melanoma_lab.data.synthetic import STYLES, render_lesion

# HAM10000's dx codes and ISIC 2019's one-hot columns, drawn like the synthetic set's classes.
HAM_STYLES = {"akiec": "actinic keratosis", "bcc": "basal cell carcinoma", "bkl": "pigmented benign keratosis",
              "df": "dermatofibroma", "mel": "melanoma", "nv": "nevus", "vasc": "vascular lesion"}
ISIC2019_STYLES = {"MEL": "melanoma", "NV": "nevus", "BCC": "basal cell carcinoma", "AK": "actinic keratosis",
                   "BKL": "pigmented benign keratosis", "DF": "dermatofibroma", "VASC": "vascular lesion",
                   "SCC": "squamous cell carcinoma"}
ISIC2019_COLUMNS = [*ISIC2019_STYLES, "UNK"]


def _lesions(styles: dict[str, str], lesions_per_class: int, seed: int) -> list[tuple[str, str, int]]:
    """(class, lesion id, images of the lesion): 1 to 3 images per lesion."""
    rng = np.random.default_rng(seed)
    return [(label, f"{label}{k}", int(rng.integers(1, 4))) for label in styles for k in range(lesions_per_class)]


def _save(path: Path, style: str, size: int, seed: list[int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(render_lesion(STYLES[style], size, np.random.default_rng(seed))).save(path, quality=92)


AGES = ["25.0", "40.0", "55.0", "70.0", "85.0", ""]  # as published: ages in 5-year steps, some missing


def write_ham10000(root: Path, lesions_per_class: int = 4, size: int = 32, seed: int = 0) -> Path:
    """``HAM10000_metadata.csv`` (lesion_id,image_id,dx,dx_type,age,sex,localization) and the images
    ``<image_id>.jpg``, half in ``HAM10000_images_part_1/``, half in ``HAM10000_images_part_2/``."""
    rows, index = [], 24306
    for lesion_number, (dx, lesion, images) in enumerate(_lesions(HAM_STYLES, lesions_per_class, seed)):
        for _ in range(images):
            image_id = f"ISIC_{index:07d}"
            part = 1 + index % 2
            _save(root / f"HAM10000_images_part_{part}" / f"{image_id}.jpg", HAM_STYLES[dx], size, [seed, index])
            rows.append([f"HAM_{lesion_number:07d}", image_id, dx, "histo", AGES[index % len(AGES)],
                         ("male", "female")[index % 2], ("back", "face", "lower extremity")[index % 3]])
            index += 1
    with (root / "HAM10000_metadata.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"])
        writer.writerows(rows)
    return root


def write_isic2019(root: Path, lesions_per_class: int = 4, size: int = 32, seed: int = 1) -> Path:
    """``ISIC_2019_Training_GroundTruth.csv`` (image + one-hot float columns MEL..UNK),
    ``ISIC_2019_Training_Metadata.csv`` (image,age_approx,anatom_site_general,lesion_id,sex; every fifth image
    without a lesion_id) and ``ISIC_2019_Training_Input/<image>.jpg``."""
    truth, meta, index = [], [], 0
    for lesion_number, (column, lesion, images) in enumerate(_lesions(ISIC2019_STYLES, lesions_per_class, seed)):
        for _ in range(images):
            image = f"ISIC_{index:07d}"
            _save(root / "ISIC_2019_Training_Input" / f"{image}.jpg", ISIC2019_STYLES[column], size, [seed, index])
            truth.append([image] + ["1.0" if c == column else "0.0" for c in ISIC2019_COLUMNS])
            meta.append([image, AGES[index % len(AGES)], ("anterior torso", "head/neck")[index % 2],
                         "" if index % 5 == 4 else f"BCN_{lesion_number:07d}", ("female", "male", "")[index % 3]])
            index += 1
    for name, header, rows in (("ISIC_2019_Training_GroundTruth.csv", ["image", *ISIC2019_COLUMNS], truth),
                               ("ISIC_2019_Training_Metadata.csv",
                                ["image", "age_approx", "anatom_site_general", "lesion_id", "sex"], meta)):
        with (root / name).open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(header)
            writer.writerows(rows)
    return root


@pytest.fixture(scope="session")
def ham_root(tmp_path_factory) -> Path:
    return write_ham10000(tmp_path_factory.mktemp("ham10000"))


@pytest.fixture(scope="session")
def isic2019_root(tmp_path_factory) -> Path:
    return write_isic2019(tmp_path_factory.mktemp("isic2019"))
