"""One honest Test set: Train copies of Test images stay out of training; clean Test metrics; unscored listed."""

import logging
import shutil

import mlflow
import pandas as pd
import pytest
from PIL import Image

from melanoma_lab.data.audit import audit_catalog, summary
from melanoma_lab.data.synthetic import ISIC_CLASSES
from melanoma_lab.data.catalog import scan
from melanoma_lab.data.synthetic import generate
from melanoma_lab.study.experiment import run_experiment
from melanoma_lab.study.preparation import load_audited_data, prepare_data
from melanoma_lab.tracking.store import tracking_uri
from tests.conftest import TINY_RUN, compose_config, data_recipe


@pytest.fixture
def contaminated(tmp_path):
    """A 9-class set whose Test holds a byte copy and a re-encoded, resized copy of two Train images, and a
    file that is not an image: (root, {Test copy: its Train original}, unreadable Test file)."""
    root = generate(tmp_path / "data", ISIC_CLASSES, 120, 45, 32, seed=3)
    byte_source = sorted((root / "Train" / "nevus").iterdir())[0]
    near_source = sorted((root / "Train" / "melanoma").iterdir())[0]
    byte_copy, near_copy = root / "Test" / "nevus" / "byte_copy.jpg", root / "Test" / "melanoma" / "near_copy.jpg"
    shutil.copy(byte_source, byte_copy)
    with Image.open(near_source) as image:
        image.resize((40, 40), Image.Resampling.BICUBIC).save(near_copy, quality=70)
    broken = root / "Test" / "nevus" / "broken.jpg"
    broken.write_bytes(b"not an image")
    return root, {str(byte_copy): str(byte_source), str(near_copy): str(near_source)}, str(broken)


def _cfg(root, tmp_path, *extra):
    return compose_config(["dataset=isic9", f"dataset.root={root}", "dataset.image_size=32",
                           "dataset.batch_size=16", *TINY_RUN, f"paths.cache_dir={tmp_path / 'cache'}", *extra],
                          root=tmp_path)


def test_audit_counts_test_images_with_a_train_twin(contaminated):
    root, copies, _ = contaminated
    report = audit_catalog(scan(root, [".jpg"]), near_duplicate_distance=4)
    pairs = {(p["test"], p["train"], p["match"]) for p in report["test_train_twins"]}
    byte_copy, near_copy = sorted(copies, key=lambda path: "near" in path)
    assert pairs == {(byte_copy, copies[byte_copy], "identical"), (near_copy, copies[near_copy], "near")}
    assert ("Test images with a Train twin (contamination): 2 (2 Test/Train pairs: 1 identical, 1 near-copies, "
            "0 same lesion)"
            in summary(report))


@pytest.mark.parametrize("policy", ["warn", "drop"])
def test_train_copies_of_test_images_stay_out_of_training_and_validation(contaminated, tmp_path, policy):
    root, copies, _ = contaminated
    cfg = _cfg(root, tmp_path, f"audit.conflict_policy={policy}")
    audited = load_audited_data(cfg.dataset, cfg.audit, tmp_path / "out")
    data = prepare_data(data_recipe(cfg), audited.catalog, audited.files)
    used = set(data.train.files["path"]) | set(data.validation.files["path"])
    assert used.isdisjoint(copies.values())
    assert len(used) == len(audited.catalog.split("train")) - 2  # nothing else was set aside
    assert set(data.test.files.loc[data.test.files["train_twin"], "path"]) == set(copies)


def test_keeping_train_copies_of_test_images_reproduces_the_notebooks_and_warns(contaminated, tmp_path, caplog):
    root, copies, _ = contaminated
    cfg = _cfg(root, tmp_path, "audit.test_contamination=keep")
    with caplog.at_level(logging.WARNING):
        audited = load_audited_data(cfg.dataset, cfg.audit, tmp_path / "out")
    assert set(copies.values()) <= set(audited.files.loc[audited.files["split"] == "train", "path"])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("audit.test_contamination=keep: 2 Train images" in message for message in warnings)


@pytest.mark.slow
def test_a_run_scores_clean_test_images_apart_and_lists_the_unscored(contaminated, tmp_path):
    root, copies, broken = contaminated
    cfg = _cfg(root, tmp_path, "tracking.log_model=false")
    results = run_experiment(cfg, tmp_path / "run")
    scored = len(scan(root, [".jpg"]).split("test")) - 1  # every readable Test image, copies included
    assert results["test_clean_images"] == scored - 2
    assert {"test_clean_balanced_accuracy", "test_clean_accuracy", "test_balanced_accuracy"} <= set(results)
    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    run = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])[0]
    assert run.data.metrics["test_clean_images"] == scored - 2 and run.data.metrics["test_unscored_images"] == 1
    assert run.data.metrics["test_images"] == scored
    predictions = pd.read_csv(client.download_artifacts(run.info.run_id, "evaluation/test_predictions.csv"))
    assert len(predictions) == scored and predictions["train_twin"].dtype == bool
    assert set(predictions.loc[predictions["train_twin"], "path"]) == set(copies)
    clean = predictions[~predictions["train_twin"]]
    predicted = clean.filter(like="p_").to_numpy().argmax(axis=1)
    assert results["test_clean_accuracy"] == pytest.approx((predicted == clean["label"]).mean())
    assert "train_twin" in pd.read_csv(client.download_artifacts(run.info.run_id,
                                                                 "evaluation/val_predictions.csv")).columns
    unscored = pd.read_csv(client.download_artifacts(run.info.run_id, "evaluation/test_unscored.csv"))
    assert list(unscored["path"]) == [broken] and unscored["reason"][0].startswith("unreadable: ")


def test_every_test_image_not_scored_is_listed_with_the_reason(contaminated, tmp_path):
    root, _, broken = contaminated
    melanoma = sorted((root / "Test" / "melanoma").iterdir())[0]
    conflict = root / "Test" / "nevus" / "conflict.jpg"
    shutil.copy(melanoma, conflict)  # the same bytes under two Test labels
    (root / "Test" / "not a class").mkdir()
    (root / "Test" / "nevus" / "notes.txt").write_text("a note")
    cfg = _cfg(root, tmp_path, "audit.conflict_policy=drop")
    audited = load_audited_data(cfg.dataset, cfg.audit, tmp_path / "out")
    unscored = prepare_data(data_recipe(cfg), audited.catalog, audited.files).test_unscored
    reasons = dict(zip(unscored["path"], unscored["reason"]))
    assert reasons[str(conflict)] == reasons[str(melanoma)] == "dropped by audit.conflict_policy=drop (label conflict)"
    assert reasons[broken].startswith("unreadable: ")
    assert reasons[str(root / "Test" / "not a class")] == "not scanned: folder is not a class of Train"
    assert reasons[str(root / "Test" / "nevus" / "notes.txt")].startswith("not scanned: not an image file")
    assert len(reasons) == 5


def test_an_unknown_contamination_mode_is_refused_with_the_choices(tmp_path):
    from melanoma_lab.config.schema import ConfigError, validate

    with pytest.raises(ConfigError, match="audit.test_contamination='drop' must be exclude or keep"):
        validate(compose_config(["audit.test_contamination=drop"], root=tmp_path))


def test_a_rotated_or_flipped_train_copy_of_a_test_image_is_its_twin_and_stays_out_of_training(tmp_path):
    """Issue 26, point 5: a Train image that is a Test image turned a quarter (or mirrored), re-encoded, is a near
    Train twin of it: listed by the audit and set aside like any copy."""
    from melanoma_lab.data.contamination import set_aside_train_twins

    root = generate(tmp_path / "data", ["melanoma", "nevus", "vascular lesion"], 15, 6, 64, seed=8)
    tests = sorted((root / "Test" / "nevus").iterdir())
    turned = {root / "Train" / "nevus" / "turned.jpg": (tests[0], Image.Transpose.ROTATE_90),
              root / "Train" / "melanoma" / "mirrored.jpg": (tests[1], Image.Transpose.FLIP_TOP_BOTTOM)}
    for copy, (test, turn) in turned.items():
        with Image.open(test) as image:
            image.transpose(turn).save(copy, quality=85)
    catalog = scan(root, [".jpg"])
    report = audit_catalog(catalog, near_duplicate_distance=4)
    pairs = {(p["test"], p["train"], p["match"]) for p in report["test_train_twins"]}
    assert pairs == {(str(test), str(copy), "near") for copy, (test, _) in turned.items()}
    kept = set(set_aside_train_twins(catalog.files, report, "exclude", announce=False)["path"])
    assert not kept & {str(copy) for copy in turned} and {str(test) for test, _ in turned.values()} <= kept
