import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from melanoma_lab.data import synthetic
from melanoma_lab.data.catalog import DatasetNotFoundError, fingerprint, scan
from melanoma_lab.data.batches import ArrayBatches, make_dataset
from melanoma_lab.data.pipeline import decode, decode_to_disk
from melanoma_lab.data.sources import load_catalog
from melanoma_lab.data.split import fold_split, train_val_split
from tests.conftest import data_recipe


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.jpg")):
        digest.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def test_synthetic_is_deterministic_and_in_isic_layout(tmp_path):
    classes = ["melanoma", "nevus", "vascular lesion"]
    a = synthetic.generate(tmp_path / "a", classes, 30, 9, 32, seed=3)
    b = synthetic.generate(tmp_path / "b", classes, 30, 9, 32, seed=3)
    c = synthetic.generate(tmp_path / "c", classes, 30, 9, 32, seed=4)
    assert _digest(a) == _digest(b) != _digest(c)
    assert sorted(p.name for p in (a / "Train").iterdir()) == classes
    assert (a / "Test" / "melanoma").is_dir()
    assert not list(tmp_path.glob(".synthetic-*")), "staging folder left behind"


def test_synthetic_counts_follow_isic_imbalance():
    counts = synthetic.class_counts(list(synthetic.ISIC_TRAIN_COUNTS), 900)
    assert counts["pigmented benign keratosis"] > 4 * counts["seborrheic keratosis"]
    assert abs(sum(counts.values()) - 900) <= 9


def test_synthetic_is_cached_by_settings(tiny_cfg):
    cfg = tiny_cfg()
    first = load_catalog(cfg.dataset)
    again = load_catalog(cfg.dataset)
    assert first.root == again.root and fingerprint(first.files) == fingerprint(again.files)
    assert set(first.files["split"]) == {"train", "test"}
    assert len(first.classes) == 9


def test_missing_dataset_names_layout_and_ways_out(tmp_path):
    with pytest.raises(DatasetNotFoundError) as error:
        scan(tmp_path / "nowhere", [".jpg"])
    message = str(error.value)
    assert "Train/<class name>/*.jpg" in message and "make data" in message and "dataset=synthetic" in message


def test_scan_reports_unexpected_and_empty_folders(tmp_path):
    root = synthetic.generate(tmp_path / "d", ["melanoma", "nevus"], 8, 0, 16, seed=0)
    (root / "Train" / "notes.txt").write_text("x")
    (root / "Train" / "melanoma" / "readme.md").write_text("x")
    for image in (root / "Test" / "melanoma").iterdir():
        image.unlink()
    catalog = scan(root, [".jpg"])
    assert any(p.endswith("notes.txt") for p in catalog.unexpected)
    assert any(p.endswith("readme.md") for p in catalog.unexpected)
    assert str(root / "Test" / "melanoma") in catalog.empty_class_folders


def test_unreadable_files_are_reported_by_name(tmp_path):
    root = synthetic.generate(tmp_path / "d", ["melanoma", "nevus"], 8, 0, 16, seed=0)
    bad = root / "Train" / "nevus" / "broken.jpg"
    bad.write_bytes(b"this is not a jpeg")
    catalog = scan(root, [".jpg"])
    decoded = decode(catalog.files, catalog.classes, 16)
    assert list(decoded.failures) == [str(bad)]
    assert len(decoded.labels) == len(catalog.files) - 1
    assert decoded.images.shape[1:] == (16, 16, 3) and decoded.images.dtype == np.uint8


def test_any_image_mode_decodes_as_rgb(tmp_path):
    from PIL import Image

    for mode, name in (("L", "grey.png"), ("RGBA", "alpha.png"), ("RGB", "big.jpg")):
        Image.new(mode, (50, 70)).save(tmp_path / name)
    files = pd.DataFrame({"path": [str(p) for p in sorted(tmp_path.iterdir())], "label": ["a"] * 3})
    decoded = decode(files, ["a"], 24)
    assert decoded.images.shape == (3, 24, 24, 3) and not decoded.failures


def test_split_is_stratified_seeded_and_keeps_copies_together():
    labels = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    sha = [f"h{i}" for i in range(100)]
    sha[1] = sha[0] = "twin"  # a byte-identical pair
    files = pd.DataFrame({"path": [f"p{i}" for i in range(100)], "label": labels, "sha256": sha})
    train, val = train_val_split(files, 0.2, seed=7)
    train2, val2 = train_val_split(files, 0.2, seed=7)
    assert list(val["path"]) == list(val2["path"])
    assert set(train["path"]).isdisjoint(val["path"]) and len(train) + len(val) == 100
    assert 15 <= len(val) <= 25
    assert val["label"].value_counts().to_dict() == pytest.approx({"a": 10, "b": 6, "c": 4}, abs=2)
    assert ("p0" in set(val["path"])) == ("p1" in set(val["path"]))


def _grouped_files(n: int = 300) -> pd.DataFrame:
    labels = (["a"] * 5 + ["b"] * 3 + ["c"] * 2) * (n // 10)
    sha = [f"h{i}" for i in range(n)]
    for i in range(0, 60, 3):  # twenty byte-identical triples
        sha[i + 1] = sha[i + 2] = sha[i]
    return pd.DataFrame({"path": [f"p{i}" for i in range(n)], "label": labels, "sha256": sha})


@pytest.mark.parametrize("fraction", [0.4, 0.3, 0.45, 0.6, 0.75])
def test_split_gives_the_validation_share_asked_for(fraction):
    files = _grouped_files()
    train, val = train_val_split(files, fraction, seed=3)
    assert len(val) / len(files) == pytest.approx(fraction, abs=0.03)  # group rounding (triples) and 1/40
    assert set(train["path"]).isdisjoint(val["path"]) and len(train) + len(val) == len(files)
    assert set(train["sha256"]).isdisjoint(val["sha256"])  # copies never straddle the split
    shares = val["label"].value_counts(normalize=True)
    assert shares.to_dict() == pytest.approx({"a": 0.5, "b": 0.3, "c": 0.2}, abs=0.05)


@pytest.mark.parametrize("fraction", [0.5, 1 / 3, 0.25, 0.2, 0.1])
def test_split_of_one_over_k_is_the_split_it_always_was(fraction):
    files = _grouped_files()
    old_train, old_val = fold_split(files, max(2, round(1 / fraction)), 0, seed=11)  # the previous train_val_split
    train, val = train_val_split(files, fraction, seed=11)
    assert list(val["path"]) == list(old_val["path"]) and list(train["path"]) == list(old_train["path"])


LOADERS = {"backend's": make_dataset, "PyDataset": ArrayBatches}  # on the TF backend make_dataset is tf.data


def _numpy(tensor) -> np.ndarray:
    import keras

    return keras.ops.convert_to_numpy(tensor)


def _batches(dataset) -> tuple[np.ndarray, np.ndarray]:
    images, labels = zip(*[(_numpy(x), _numpy(y)) for x, y in dataset])
    return np.concatenate(images), np.concatenate(labels)


@pytest.mark.parametrize("loader", LOADERS)
def test_pipeline_shuffles_and_augments_only_training(tiny_cfg, loader):
    from melanoma_lab.components.augmentation import build_augmentation

    make = LOADERS[loader]
    cfg = tiny_cfg("augmentation=flip_rotate_zoom")
    catalog = load_catalog(cfg.dataset)
    decoded = decode(catalog.split("train"), catalog.classes, 32)
    augment = build_augmentation(cfg.augmentation, seed=1)
    plain = next(iter(make(decoded, 9, 200, training=False, seed=1, augment=augment)))
    assert _numpy(plain[0]).dtype == np.float32 and _numpy(plain[1]).shape == (len(decoded.labels), 9)
    assert np.array_equal(_numpy(plain[0]), decoded.images[: len(plain[0])].astype(np.float32))
    assert np.array_equal(_numpy(plain[1]).argmax(axis=1), decoded.labels[: len(plain[0])])
    shuffled = next(iter(make(decoded, 9, 200, training=True, seed=1, augment=augment)))
    assert not np.array_equal(_numpy(shuffled[0]), _numpy(plain[0]))
    assert sorted(_numpy(shuffled[1]).argmax(axis=1)) == sorted(_numpy(plain[1]).argmax(axis=1))
    assert build_augmentation(tiny_cfg().augmentation, seed=1) is None


@pytest.fixture
def dtype_policy(request):
    """The global Keras dtype policy set to ``request.param`` (as trainer.precision sets it), then restored."""
    import keras

    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(request.param)
    yield request.param
    keras.config.set_dtype_policy(before)


@pytest.mark.parametrize("dtype_policy", ["float32", "mixed_bfloat16"], indirect=True)
@pytest.mark.parametrize("loader", LOADERS)
def test_a_mixup_step_blends_labels_with_images_and_the_others_keep_them_one_hot(tiny_cfg, loader, dtype_policy):
    """Also under mixed precision: the steps compute in float32 (before, MixUp met float32 labels with bfloat16
    images and failed in tf.data, so a mixup run with trainer.precision=auto on a bf16 CPU could not train)."""
    from melanoma_lab.components.augmentation import build_augmentation

    make = LOADERS[loader]
    catalog = load_catalog(tiny_cfg().dataset)
    decoded = decode(catalog.split("train"), catalog.classes, 32)
    plain = tiny_cfg("augmentation=flip_rotate_zoom")
    images, labels = (_numpy(t) for t in next(iter(make(decoded, 9, 64, True, 1, build_augmentation(
        plain.augmentation, seed=1)))))
    assert set(np.unique(labels)) == {0.0, 1.0}  # geometric steps pass the labels through
    mixing = tiny_cfg("augmentation=flip_rotate_zoom", "+augmentation.mixup._target_=keras.layers.MixUp",
                      "+augmentation.mixup.alpha=0.8")
    images, labels = (_numpy(t) for t in next(iter(make(decoded, 9, 64, True, 1, build_augmentation(
        mixing.augmentation, seed=1)))))
    assert np.allclose(labels.sum(axis=1), 1.0, atol=1e-5) and images.shape == (64, 32, 32, 3)
    assert images.dtype == labels.dtype == np.float32
    assert (labels.max(axis=1) < 0.99).mean() > 0.5  # most rows now carry two classes


def test_the_pydataset_reshuffles_every_epoch_from_its_seed(tiny_cfg):
    cfg = tiny_cfg()
    catalog = load_catalog(cfg.dataset)
    decoded = decode(catalog.split("train"), catalog.classes, 32)

    def epochs(seed: int) -> list[np.ndarray]:
        batches, orders = ArrayBatches(decoded, 9, 16, training=True, seed=seed), []
        for _ in range(2):
            orders.append(np.concatenate([_numpy(batches[i][1]).argmax(axis=1) for i in range(len(batches))]))
            batches.on_epoch_end()
        return orders

    first, again, other = epochs(5), epochs(5), epochs(6)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))  # the same seed: the same epochs
    assert not np.array_equal(first[0], first[1]) and not np.array_equal(first[0], other[0])
    assert sorted(first[0]) == sorted(first[1]) == sorted(decoded.labels)  # each epoch: every image once
    assert len(ArrayBatches(decoded, 9, 16, training=True, seed=5)) == -(-len(decoded.labels) // 16)


def test_processes_training_together_each_take_their_slice_of_every_full_batch(tiny_cfg):
    cfg = tiny_cfg()
    catalog = load_catalog(cfg.dataset)
    decoded = decode(catalog.split("train"), catalog.classes, 32)
    whole = ArrayBatches(decoded, 9, 16, training=True, seed=3)
    parts = [ArrayBatches(decoded, 9, 16, training=True, seed=3).shard(i, 2) for i in range(2)]
    assert len(parts[0]) == len(parts[1]) == len(decoded.labels) // 16  # the short last batch is dropped
    for step in range(len(parts[0])):
        images = np.concatenate([_numpy(part[step][0]) for part in parts])
        assert images.shape[0] == 16 and np.array_equal(images, _numpy(whole[step][0]))
    with pytest.raises(ValueError, match="multiple of 3"):
        whole.shard(0, 3)


def test_the_running_backend_chooses_the_loader(tiny_cfg, monkeypatch):
    import keras
    import tensorflow as tf

    cfg = tiny_cfg()
    catalog = load_catalog(cfg.dataset)
    decoded = decode(catalog.split("train"), catalog.classes, 32)
    assert isinstance(make_dataset(decoded, 9, 16, True, 1), tf.data.Dataset)
    for other in ("jax", "torch"):
        monkeypatch.setattr(keras.backend, "backend", lambda: other)
        assert isinstance(make_dataset(decoded, 9, 16, True, 1), ArrayBatches)


@pytest.mark.parametrize("loader", LOADERS)
def test_a_split_decoded_to_disk_trains_like_one_in_ram_and_is_reused(tiny_cfg, tmp_path, loader):
    cfg = tiny_cfg()
    catalog = load_catalog(cfg.dataset)
    files = catalog.split("train")[:70].copy()
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    files = pd.concat([files, pd.DataFrame([{**files.iloc[0].to_dict(), "path": str(tmp_path / "broken.jpg")}])])
    in_ram = decode(files, catalog.classes, 32)
    on_disk = decode_to_disk(files, catalog.classes, 32, tmp_path / "decoded")
    assert isinstance(on_disk.images, np.memmap) and not isinstance(in_ram.images, np.memmap)
    assert np.array_equal(on_disk.images, in_ram.images) and np.array_equal(on_disk.labels, in_ram.labels)
    assert list(on_disk.failures) == [str(tmp_path / "broken.jpg")] and len(on_disk.files) == 70
    for training in (False, True):
        ram_x, ram_y = _batches(LOADERS[loader](in_ram, 9, 16, training=training, seed=3))
        disk_x, disk_y = _batches(LOADERS[loader](on_disk, 9, 16, training=training, seed=3))
        assert np.array_equal(ram_x, disk_x) and np.array_equal(ram_y, disk_y)  # same order for the same seed
    (cache_file,) = (tmp_path / "decoded").glob("*/images.u8")
    written = cache_file.stat().st_mtime_ns
    again = decode_to_disk(files, catalog.classes, 32, tmp_path / "decoded")
    assert cache_file.stat().st_mtime_ns == written and np.array_equal(again.images, in_ram.images)


def test_a_training_split_over_the_ram_budget_is_read_from_the_disk_cache(tiny_cfg):
    from melanoma_lab.study.preparation import load_audited_data, prepare_data

    cfg = tiny_cfg("dataset.ram_budget_mb=0.1")  # the tiny training split needs ~0.28 MB decoded
    audited = load_audited_data(cfg.dataset, cfg.audit, Path(cfg.paths.root_dir) / "out")
    data = prepare_data(data_recipe(cfg), audited.catalog, audited.files)
    assert isinstance(data.train.images, np.memmap) and not isinstance(data.validation.images, np.memmap)
    assert Path(data.train.images.filename).is_relative_to(Path(cfg.paths.cache_dir).resolve() / "decoded")
    roomy = prepare_data(data_recipe(tiny_cfg("dataset.ram_budget_mb=100")), audited.catalog, audited.files)
    assert not isinstance(roomy.train.images, np.memmap)
    assert np.array_equal(roomy.train.images, data.train.images)
