"""Checks on the real ISIC training copy, when ../shared/data/isic-9class-180px is present."""

import os

import pytest

from melanoma_lab.data.audit import audit_catalog
from melanoma_lab.data.catalog import scan
from melanoma_lab.study.experiment import run_experiment
from tests.conftest import TINY_RUN, compose_config

pytestmark = pytest.mark.real_data


def test_real_layout_and_known_defects_are_found(real_data):
    catalog = scan(real_data, [".jpg"])
    assert len(catalog.classes) == 9 and len(catalog.files) == 2241 and "melanoma" in catalog.classes
    report = audit_catalog(catalog, near_duplicate_distance=0)
    assert report["duplicate_groups"], "the real copy has byte-identical images"
    assert report["label_conflicts"], "the real copy has identical images under two labels"
    assert not report["unreadable_files"]
    assert report["class_counts"]["train"]["melanoma"] == 438


def test_smoke_training_on_a_few_real_images(real_data, tmp_path):
    subset = tmp_path / "isic_subset"
    for folder in sorted((real_data / "Train").iterdir()):
        (subset / "Train" / folder.name).mkdir(parents=True)
        for image in sorted(folder.iterdir())[:8]:
            os.symlink(image, subset / "Train" / folder.name / image.name)
    cfg = compose_config(TINY_RUN + [f"dataset.root={subset}", "dataset.image_size=48", "tracking.log_model=false"],
                         root=tmp_path)
    results = run_experiment(cfg, tmp_path / "out")
    assert 0.0 <= results["val_balanced_accuracy"] <= 1.0
    assert "test_balanced_accuracy" not in results  # this copy has no Test/ split
