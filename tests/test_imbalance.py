import numpy as np
import pandas as pd
import pytest

from melanoma_lab.config.schema import ConfigError
from melanoma_lab.data.sources import load_catalog
from melanoma_lab.study.preparation import DataLeakError, check_no_leak, prepare_data
from melanoma_lab.components.imbalance import balanced_class_weights, build_pipeline, extra_counts, generate_augmentor_images
from tests.conftest import data_recipe


def test_extra_counts_fixed_or_up_to_target():
    counts = {"a": 10, "b": 3}
    assert extra_counts(counts, 5, None) == {"a": 5, "b": 5}
    assert extra_counts(counts, 0, 12) == {"a": 2, "b": 9}
    with pytest.raises(ConfigError, match="target_per_class=8"):
        extra_counts(counts, 0, 8)


def test_unknown_augmentor_operation_is_a_config_error():
    with pytest.raises(ConfigError, match="spin_around"):
        build_pipeline([{"name": "spin_around", "probability": 0.5, "params": {}}])
    with pytest.raises(ConfigError, match="rotate"):
        build_pipeline([{"name": "rotate", "probability": 0.5, "params": {"max_left": 3}}])


def test_augmentor_generates_from_training_images_only_and_is_cached(tiny_cfg, monkeypatch):
    cfg = tiny_cfg("imbalance=augmentor", "imbalance.extra_per_class=4")
    catalog = load_catalog(cfg.dataset)
    train = catalog.split("train").iloc[::2].reset_index(drop=True)
    generated = generate_augmentor_images(train, cfg.imbalance, cfg.paths.cache_dir, seed=1)
    assert len(generated) == 4 * len(catalog.classes)
    assert set(generated["parent"]) <= set(train["path"])
    assert (generated["source"] == "augmentor").all() and (generated["split"] == "train").all()
    for row in generated.itertuples():
        assert train.loc[train["path"] == row.parent, "label"].item() == row.label
    from melanoma_lab.components import imbalance

    def regenerate(*args, **kwargs):
        raise AssertionError("a warm cache must not regenerate")

    monkeypatch.setattr(imbalance, "staged_folder", regenerate)  # not timed: a slow machine must not fail it
    again = generate_augmentor_images(train, cfg.imbalance, cfg.paths.cache_dir, seed=1)
    pd.testing.assert_frame_equal(generated, again)


def test_no_validation_image_nor_anything_derived_from_it_reaches_training(tiny_cfg):
    cfg = tiny_cfg("experiment=m3", "imbalance.extra_per_class=5")
    catalog = load_catalog(cfg.dataset)
    files = catalog.files.copy()
    data = prepare_data(data_recipe(cfg), catalog, files)
    train, val = data.train.files, data.validation.files
    assert set(train["path"]).isdisjoint(val["path"])
    originals = train[train["source"] == "original"]
    derived = train[train["source"] == "augmentor"]
    assert len(derived) == 5 * len(catalog.classes)
    assert set(derived["parent"]) <= set(originals["path"])
    assert set(derived["parent"]).isdisjoint(val["path"])
    assert set(train["sha256"]).isdisjoint(val["sha256"])
    assert (val["source"] == "original").all()
    assert data.counts_after == {c: data.counts_before[c] + 5 for c in catalog.classes}


def test_leak_guard_refuses_derived_validation_images():
    train = pd.DataFrame({"path": ["t1", "g1"], "label": ["a", "a"], "sha256": ["1", "2"],
                          "source": ["original", "augmentor"], "parent": ["", "v1"]})
    val = pd.DataFrame({"path": ["v1"], "label": ["a"], "sha256": ["3"], "source": ["original"], "parent": [""]})
    with pytest.raises(DataLeakError, match="1 generated images"):
        check_no_leak(train, val)
    with pytest.raises(DataLeakError, match="1 shared contents"):
        check_no_leak(train.iloc[:1], val.assign(sha256="1"))


def test_balanced_class_weights_favour_rare_classes():
    weights = balanced_class_weights(np.array([0, 0, 0, 1]), num_classes=3)
    assert weights[1] == pytest.approx(3 * weights[0]) and weights[2] == 1.0


def test_class_weights_are_capped_for_a_nearly_empty_class():
    labels = np.array([0] * 98 + [1] * 2)
    uncapped = balanced_class_weights(labels, num_classes=2)
    capped = balanced_class_weights(labels, num_classes=2, max_weight=5.0)
    assert uncapped[1] == pytest.approx(25.0)
    assert capped[1] == 5.0 and capped[0] == pytest.approx(uncapped[0])
