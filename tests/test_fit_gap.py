"""The over-fitting gap from comparable numbers (issue 26, point 7): the train side is one clean prediction pass of
the evaluated weights and views over the original training images, and every epoch is validated (hence selected)
with the views that score the final model."""

from __future__ import annotations

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest

from melanoma_lab.data.pipeline import DecodedImages
from melanoma_lab.evaluation import registry
from melanoma_lab.evaluation.inference import predict_probabilities
from melanoma_lab.serving.classifier import encode_image
from tests.conftest import TINY_AUGMENTOR, data_recipe, training_recipe


def _clean_pass(uri: str, cfg, tmp_path) -> tuple[np.ndarray, np.ndarray, int]:
    """(predicted, true) class indices of the logged model's own prediction (its views) of the run's original
    training images, split off as the run split them, before any rebalancing; and their number."""
    from melanoma_lab.study.preparation import load_audited_data, split_labelled

    audited = load_audited_data(cfg.dataset, cfg.audit, tmp_path)
    labelled = audited.files[audited.files["split"] == "train"].reset_index(drop=True)
    train, _, _ = split_labelled(data_recipe(cfg), labelled, None)
    model = mlflow.pyfunc.load_model(uri)
    classes = model.metadata.metadata["classes"]
    table = model.predict(pd.DataFrame({"image": [encode_image(p) for p in train["path"]]}))
    return table[classes].to_numpy().argmax(axis=1), np.array([classes.index(c) for c in train["label"]]), len(train)


def _assert_clean_gap(metrics: dict[str, float], predicted: np.ndarray, labels: np.ndarray, images: int) -> None:
    clean = float(np.mean(predicted == labels))
    # the gap's name as it was; its train side was Keras' running accuracy over the epoch's training batches
    assert metrics["train_val_accuracy_gap"] == pytest.approx(clean - metrics["final_val_accuracy"], abs=1e-6)
    assert metrics["train_accuracy"] == pytest.approx(clean, abs=1e-6)
    assert metrics["train_pass_images"] == images
    recalls = [np.mean(predicted[labels == c] == c) for c in np.unique(labels)]
    assert metrics["train_balanced_accuracy"] == pytest.approx(np.mean(recalls), abs=1e-6)
    assert metrics[registry.gap_key("balanced_accuracy")] == pytest.approx(
        metrics["train_balanced_accuracy"] - metrics["val_balanced_accuracy"], abs=1e-6)


@pytest.mark.slow  # ~20 s: a run with Augmentor, and its logged model loaded
def test_an_augmentor_rebalanced_run_logs_the_gap_of_a_clean_pass_over_its_original_images(tiny_cfg, tmp_path):
    """m3 trains on Augmentor copies (rebalanced classes), flipped, rotated, zoomed, with dropout; evaluated with
    the flip views. Keras' running accuracy on those batches is not what validation measures. The logged train
    accuracy is the logged model's own prediction (its views) of the original training images, and the gap is that
    minus the validation accuracy."""
    from melanoma_lab.study.experiment import run_experiment
    from melanoma_lab.tracking.store import tracking_uri

    cfg = tiny_cfg("experiment=m3", "trainer.epochs=1", "evaluation.tta=flip", *TINY_AUGMENTOR)
    run_experiment(cfg, tmp_path / "out")
    mlflow.set_tracking_uri(tracking_uri(None, tmp_path / "mlruns"))
    client = mlflow.tracking.MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])
    _assert_clean_gap(run.data.metrics, *_clean_pass(f"runs:/{run.info.run_id}/model", cfg, tmp_path))
    assert run.data.metrics["train_images"] > run.data.metrics["train_pass_images"]  # the copies are not scored


def test_the_session_m2_logs_the_gap_of_a_clean_pass_of_its_logged_model(trained_model, _trained_store, tmp_path):
    """The session's tiny m2 (augmented batches, dropout): the same check on the model other tests share."""
    uri, run, _, _ = trained_model
    _assert_clean_gap(run.data.metrics, *_clean_pass(uri, _trained_store[0], tmp_path))


def _model(size: int = 4, classes: int = 3) -> keras.Model:
    """A model that tells an image from its flips (Flatten keeps where each pixel is)."""
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((size, size, 3)), keras.layers.Flatten(),
                             keras.layers.Dense(classes, activation="softmax")])


def test_the_clean_pass_skips_generated_copies_and_caps_the_images_it_predicts():
    from melanoma_lab.evaluation.fit_gap import clean_train_metrics, gaps, original_rows, train_pass_rows

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(10, 4, 4, 3)).astype(np.uint8)
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 0, 0, 0])
    files = pd.DataFrame({"path": [f"i{i}.png" for i in range(10)],
                          "source": ["original"] * 6 + ["augmentor"] * 4})  # 4 rebalancing copies
    model = _model()
    scores = clean_train_metrics(model, DecodedImages(images, labels, files, {}), 4, "flip", None, 1)
    predicted = predict_probabilities(model, images[:6], 4, "flip").argmax(axis=1)
    assert scores["train_accuracy"] == pytest.approx(np.mean(predicted == labels[:6]))
    assert scores["train_pass_images"] == 6
    assert list(original_rows(files)) == [0, 1, 2, 3, 4, 5]
    assert list(original_rows(files.drop(columns="source"))) == list(range(10))
    capped = train_pass_rows(files, 4, seed=1)
    assert len(capped) == 4 and set(capped) <= set(range(6)) and list(capped) == sorted(capped)
    assert list(train_pass_rows(files, 4, seed=1)) == list(capped)  # the sample is the seed's
    assert gaps(scores, {"accuracy": 0.25}) == {registry.gap_key("accuracy"): scores["train_accuracy"] - 0.25}


@pytest.mark.parametrize("epoch_views,selected,other", [(None, "flip", "none"), ("none", "none", "flip")])
def test_every_epoch_is_validated_with_the_views_that_score_the_final_model(tiny_cfg, tmp_path, epoch_views,
                                                                            selected, other):
    """evaluation.tta=flip scores the final model as the mean of 3 views; the epoch selection (early stopping,
    checkpoint: trainer.monitor) reads validation scored the same way, not one view, unless evaluation.epoch_tta
    names cheaper views for it."""
    from melanoma_lab.data.sources import load_catalog
    from melanoma_lab.study.preparation import prepare_data
    from melanoma_lab.tracking.run import RunTracker
    from melanoma_lab.training.fit import train_model

    cfg = tiny_cfg("evaluation.tta=flip", f"evaluation.epoch_tta={epoch_views or 'null'}", "trainer.precision=float32",
                   "tracking.enabled=false")
    catalog = load_catalog(cfg.dataset)
    data = prepare_data(data_recipe(cfg), catalog, catalog.files)
    model, history = train_model(training_recipe(cfg), data, RunTracker(False, "", "", "run", None), tmp_path,
                                 tmp_path / "backup")
    images = data.validation.images.astype(np.float32)
    one_hot = np.eye(len(data.classes), dtype=np.float32)[data.validation.labels]
    chosen = predict_probabilities(model, images, cfg.dataset.batch_size, selected)
    unused = predict_probabilities(model, images, cfg.dataset.batch_size, other)
    loss = keras.losses.CategoricalCrossentropy()
    assert float(loss(one_hot, chosen)) == pytest.approx(history["val_loss"][-1], rel=1e-5)
    assert float(loss(one_hot, unused)) != pytest.approx(history["val_loss"][-1], rel=1e-5)


def test_the_report_verdict_reads_the_clean_gap_and_says_so_when_none_was_logged():
    from melanoma_lab.reporting.selection import Study, StudyRun
    from melanoma_lab.reporting.tables import conclusions

    history = {"val_loss": [1.0, 0.8, 0.9]}
    runs = [StudyRun("a", "m1", 1, {}, {registry.gap_key("accuracy"): 0.2}, history, {}),
            StudyRun("b", "m2", 1, {}, {}, history, {})]
    lines = conclusions(Study("s", runs, ["x", "y"], None, "test", pd.DataFrame()), [])
    assert lines[0].startswith("**m1** overfits: train-validation accuracy gap 0.200 (one clean pass of the evaluated")
    assert lines[1].startswith("**m2**: no train-validation gap logged for its runs")  # was: "does not overfit much"


def test_the_report_says_where_validation_loss_was_lowest_and_when_it_was_still_falling():
    from melanoma_lab.reporting.selection import Study, StudyRun
    from melanoma_lab.reporting.tables import conclusions

    gap = {registry.gap_key("accuracy"): 0.05}
    bottomed, falling = {"val_loss": [1.0, 0.8, 0.9]}, {"val_loss": [1.0, 0.9, 0.8]}
    runs = [StudyRun("a", "m1", 1, {}, gap, bottomed, {}), StudyRun("b", "m2", 1, {}, gap, falling, {}),
            StudyRun("c", "m2", 2, {}, gap, bottomed, {}), StudyRun("d", "m3", 1, {}, gap, {}, {}),
            StudyRun("e", "m4", 1, {}, gap, {"val_loss": [0.9]}, {})]
    lines = conclusions(Study("s", runs, ["x", "y"], None, "test", pd.DataFrame()), [])
    assert lines[0].endswith("; validation loss lowest at epoch 2.0 of 3 (mean over 1 run).")
    # m2's first seed was still improving at its last epoch: the loss had not bottomed out there (was: "bottomed out")
    assert lines[1].endswith("; validation loss lowest at epoch 2.5 of 3 (mean over 2 runs), still falling at the last "
                             "epoch in 1 of 2: more epochs may help.")
    assert lines[2].endswith("; no validation-loss history logged.")  # was: " (mean over folds)."
    assert lines[3].endswith("; validation loss lowest at epoch 1.0 of 1 (mean over 1 run).")  # one epoch: no trend

    nan = float("nan")  # a run that diverged: a NaN epoch is not where the loss was lowest (np.argmin said it was)
    runs = [StudyRun("f", "m5", 1, {}, gap, {"val_loss": [1.0, 0.7, nan, nan]}, {}),
            StudyRun("g", "m6", 1, {}, gap, {"val_loss": [nan, nan]}, {}),
            StudyRun("h", "m6", 2, {}, gap, {"val_loss": [1.0, 0.9]}, {})]
    lines = conclusions(Study("s", runs, ["x", "y"], None, "test", pd.DataFrame()), [])
    assert lines[0].endswith("; validation loss lowest at epoch 2.0 of 4 (mean over 1 run); validation loss not "
                             "finite at some epoch in 1 of 1 runs (diverged).")
    assert lines[1].endswith("; validation loss lowest at epoch 2.0 of 2 (mean over 1 run), still falling at the last "
                             "epoch in 1 of 1: more epochs may help; validation loss not finite at some epoch in 1 of "
                             "2 runs (diverged).")
