"""The metric registry: a metric registered once is computed on an evaluation and shown where its entry says
(run summary, study report), and its direction is the mode of every monitor on it."""

import warnings

import keras
import numpy as np
import pandas as pd
import pytest

from melanoma_lab.config.schema import ConfigError, validate
from melanoma_lab.evaluation import registry
from melanoma_lab.evaluation.metrics import evaluate
from tests.conftest import compose_config

CLASSES = ["melanoma", "nevus", "other"]


def share_of_first_class(scored: registry.Scored) -> float:
    """A toy metric: the share of images predicted as the first class."""
    return float((scored.predicted == 0).mean())


@pytest.fixture
def toy():
    """A toy metric shown on the epoch log, the run summary (validation) and the study report; removed after."""
    metric = registry.register(registry.Metric(
        "toy_share", share_of_first_class, "max", "share predicted first", "toy share",
        shown={registry.EPOCH: (), registry.SUMMARY: ("val",), registry.REPORT: ()}))
    yield metric
    registry.unregister("toy_share")


@pytest.fixture
def toy_error():
    """A toy minimised epoch metric."""
    registry.register(registry.Metric("toy_error", lambda s: float((s.predicted != s.labels).mean()), "min",
                                      "error rate", shown={registry.EPOCH: ()}))
    yield
    registry.unregister("toy_error")


def _probabilities(predicted: list[int]) -> np.ndarray:
    return np.eye(len(CLASSES))[predicted] * 0.9 + 0.1 / len(CLASSES)


def test_a_registered_metric_is_computed_and_shown_in_the_summary_and_report(toy):
    from melanoma_lab.cli.train import summary_line
    from melanoma_lab.reporting.selection import Study, StudyRun
    from melanoma_lab.reporting.tables import results_table

    labels = np.array([0, 0, 1, 1, 2, 2])
    probabilities = _probabilities([0, 1, 1, 1, 0, 2])
    metrics = evaluate(labels, probabilities, CLASSES, "melanoma", 0.9, 0.9, 5).metrics
    assert metrics["toy_share"] == pytest.approx(2 / 6)
    assert "balanced_accuracy" in metrics and "val_toy_share" in registry.keys(registry.SUMMARY)

    results = {f"val_{k}": v for k, v in metrics.items()}
    assert "val_toy_share=0.3333" in summary_line(results, cross_validated=False)
    assert "cv_mean_val_toy_share=0.3333" in summary_line({f"cv_mean_{k}": v for k, v in results.items()}, True)

    table = pd.DataFrame(probabilities, columns=[f"p_{c}" for c in CLASSES])
    table.insert(0, "label", labels)
    table.insert(0, "path", [f"img{i}" for i in range(len(labels))])
    runs = [StudyRun(f"run{seed}", "m1", seed, {}, {f"test_{k}": v for k, v in metrics.items()}, {},
                     {"test": table}) for seed in (1, 2)]
    study = Study("s", runs, CLASSES, None, "test", pd.DataFrame(), melanoma_class="melanoma")
    report = results_table(study, samples=100, confidence=0.9)
    assert report.loc[0, "test toy share"] == "0.333 ± 0.000"


def test_the_registry_is_left_as_it_was_after_a_test_metric():
    assert "toy_share" not in registry.METRICS and "toy_error" not in registry.METRICS
    assert "toy_share" not in evaluate(np.array([0, 1]), _probabilities([0, 1]), CLASSES, "melanoma", 0.9, 0.9,
                                       5).metrics
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.METRICS["accuracy"])


def test_direction_drives_early_stopping_checkpoint_and_best_epoch(tmp_path, toy, toy_error):
    from melanoma_lab.tracking.run import RunTracker
    from melanoma_lab.training.fit import ValidationMetrics, best_epoch, build_callbacks

    for monitor, mode in (("val_toy_share", "max"), ("val_toy_error", "min"), ("val_balanced_accuracy", "max"),
                          ("val_loss", "min")):
        cfg = compose_config([f"trainer.monitor={monitor}"])
        validate(cfg)
        callbacks = build_callbacks(cfg.callbacks, cfg.trainer.monitor, tmp_path, RunTracker(False, "", "", "", None), None,
                                    tmp_path / "backup")
        stopping = [c for c in callbacks if isinstance(c, keras.callbacks.EarlyStopping)]
        checkpoint = [c for c in callbacks if isinstance(c, keras.callbacks.ModelCheckpoint)]
        assert stopping and checkpoint
        assert [c.monitor for c in stopping + checkpoint] == [monitor, monitor]
        assert [c.mode for c in stopping + checkpoint] == [mode, mode]
    history = {"val_toy_share": [0.2, 0.9, 0.5], "val_toy_error": [0.2, 0.9, 0.5]}
    assert best_epoch(history, "val_toy_share") == 1 and best_epoch(history, "val_toy_error") == 0

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, activation="softmax")])
    images = np.random.default_rng(0).normal(size=(6, 2)).astype(np.float32)
    callback = ValidationMetrics(images, np.array([0, 0, 1, 1, 2, 2]), 3, keras.losses.CategoricalCrossentropy(), 3,
                                 "none")
    callback.set_model(model)
    logs: dict = {}
    callback.on_epoch_end(0, logs)
    predicted = model.predict(images, verbose=0).argmax(axis=1)
    assert logs["val_toy_share"] == pytest.approx(np.mean(predicted == 0)) and "val_toy_error" in logs


def test_the_old_monitor_name_is_an_alias_with_a_deprecation_and_unknown_ones_are_refused(tmp_path):
    from melanoma_lab.tracking.run import RunTracker
    from melanoma_lab.training.fit import build_callbacks

    cfg = compose_config(["trainer.monitor=val_bacc"])
    validate(cfg)
    with pytest.warns(DeprecationWarning, match="say 'val_balanced_accuracy'"):
        callbacks = build_callbacks(cfg.callbacks, cfg.trainer.monitor, tmp_path, RunTracker(False, "", "", "", None), None,
                                    tmp_path / "b")
    stopping = next(c for c in callbacks if isinstance(c, keras.callbacks.EarlyStopping))
    assert (stopping.monitor, stopping.mode) == ("val_balanced_accuracy", "max")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert registry.mode("val_bacc") == "max"
    for key in ("trainer.monitor", "tuner.objective"):
        with pytest.raises(ConfigError, match=f"{key}='val_auc' must be one of val_loss, val_accuracy, "
                                              "val_balanced_accuracy"):
            validate(compose_config([f"{key}=val_auc"] if key == "trainer.monitor"
                                    else ["tuner=random", f"{key}=val_auc"]))


def test_one_name_per_metric_in_the_places_that_show_it():
    assert registry.monitors()[:3] == ["val_loss", "val_accuracy", "val_balanced_accuracy"]
    assert "val_bacc" not in registry.keys(registry.HEADLINE)
    assert ("val_balanced_accuracy", "validation balanced accuracy") in registry.labelled(registry.CARD)
    assert registry.keys(registry.TAGS) == ["oof_balanced_accuracy", "oof_melanoma_roc_auc",
                                            "oof_melanoma_alert_sensitivity", "oof_melanoma_alert_specificity",
                                            # a fold ensemble's own operating point and Test numbers (issue 26)
                                            "ensemble_calibration_melanoma_alert_sensitivity",
                                            "ensemble_calibration_melanoma_alert_specificity",
                                            "ensemble_test_balanced_accuracy", "ensemble_test_melanoma_roc_auc",
                                            "ensemble_test_melanoma_alert_sensitivity",
                                            "ensemble_test_melanoma_alert_specificity"]
    assert set(registry.keys(registry.INTERVAL)) <= set(registry.keys(registry.TAGS))  # tagged with their bounds
    assert registry.names(registry.SHIFT_GATE) == ["balanced_accuracy_frequent", "melanoma_roc_auc"]
    assert all(m.direction == "min" for m in registry.METRICS.values() if m.name in ("loss", "ece"))
