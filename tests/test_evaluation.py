import io

import numpy as np
import pandas as pd
import pytest

from melanoma_lab.evaluation.metrics import (
    calibrate_alert,
    evaluate,
    sensitivity_at_specificity,
    specificity_at_sensitivity,
    threshold_for_sensitivity,
)
from melanoma_lab.evaluation.scores import expected_calibration_error, reliability_table

CLASSES = ["melanoma", "nevus", "other"]


def _probs(predicted: list[int], confidence: float = 0.8) -> np.ndarray:
    p = np.full((len(predicted), 3), (1 - confidence) / 2)
    p[np.arange(len(predicted)), predicted] = confidence
    return p


def test_metrics_match_hand_computed_values():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    predicted = [0, 0, 0, 1, 1, 0, 2, 1]
    result = evaluate(labels, _probs(predicted), CLASSES, "melanoma", 0.8, 0.9, 10)
    m = result.metrics
    assert m["accuracy"] == pytest.approx(5 / 8)
    # recalls: melanoma 3/4, nevus 1/2, other 1/2
    assert m["balanced_accuracy"] == pytest.approx((0.75 + 0.5 + 0.5) / 3)
    assert m["melanoma_sensitivity"] == pytest.approx(0.75)
    # non-melanoma images: 4, one predicted melanoma
    assert m["melanoma_specificity"] == pytest.approx(3 / 4)
    # precisions: melanoma 3/4, nevus 1/3, other 1/1 -> f1s
    f1 = [2 * 0.75 * 0.75 / 1.5, 2 * (1 / 3) * 0.5 / (1 / 3 + 0.5), 2 * 1 * 0.5 / 1.5]
    assert m["macro_f1"] == pytest.approx(np.mean(f1))
    assert result.per_class["support"].tolist() == [4, 2, 2]
    assert result.confusion.tolist() == [[3, 1, 0], [1, 1, 0], [0, 1, 1]]
    # every prediction has confidence 0.8: accuracy 5/8 -> ECE |0.625 - 0.8|
    assert m["ece"] == pytest.approx(0.175)


def test_melanoma_auc_and_operating_points():
    is_mel = np.array([1, 1, 1, 0, 0, 0, 0])
    score = np.array([0.9, 0.8, 0.3, 0.7, 0.2, 0.1, 0.05])
    # ranking: 0.9 M, 0.8 M, 0.7 N, 0.3 M, ...: AUC = (4 + 4 + 3) / 12
    labels = np.where(is_mel == 1, 0, 1)
    probs = np.stack([score, 1 - score, np.zeros_like(score)], axis=1)
    m = evaluate(labels, probs, CLASSES, "melanoma", 0.8, 0.9, 5).metrics
    assert m["melanoma_roc_auc"] == pytest.approx(11 / 12)
    # specificity >= 0.8 allows no false positive of 4: threshold 0.8 finds 2 of 3 melanomas
    assert sensitivity_at_specificity(is_mel, score, 0.8) == pytest.approx(2 / 3)
    # specificity >= 0.75 allows one: threshold 0.3 finds all 3
    assert sensitivity_at_specificity(is_mel, score, 0.75) == pytest.approx(1.0)
    # sensitivity >= 0.9 needs all 3 (threshold 0.3): one negative above -> specificity 3/4
    assert specificity_at_sensitivity(is_mel, score, 0.9) == pytest.approx(3 / 4)
    assert m["melanoma_sensitivity_at_spec_0.8"] == pytest.approx(2 / 3)
    assert m["melanoma_specificity_at_sens_0.9"] == pytest.approx(3 / 4)


def test_per_class_auc_is_nan_for_absent_class_and_macro_ignores_it():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1, 0], [0.6, 0.4, 0], [0.2, 0.8, 0], [0.3, 0.7, 0]])
    result = evaluate(labels, probs, CLASSES, "melanoma", 0.8, 0.9, 10)
    assert np.isnan(result.per_class["roc_auc"][2])
    assert result.metrics["macro_roc_auc"] == pytest.approx(1.0)
    assert result.metrics["balanced_accuracy"] == pytest.approx(1.0)


def test_calibration_table_and_error():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.95, 0.05, 0], [0.95, 0.05, 0], [0.55, 0.45, 0], [0.45, 0.55, 0]])
    table = reliability_table(labels, probs, bins=2)
    assert table["count"].tolist() == [0, 4]
    # bin (0.5, 1]: confidence mean 0.75, accuracy 3/4 -> ECE 0
    assert expected_calibration_error(labels, probs, 2) == pytest.approx(0.0)
    # 10 bins: {0.95, 0.95} both right (|1 - 0.95|), {0.55, 0.55} one right (|0.5 - 0.55|), each half the data
    assert expected_calibration_error(labels, probs, 10) == pytest.approx(0.05)


def test_alert_threshold_is_chosen_for_sensitivity_and_reused():
    is_mel = np.array([1, 1, 1, 0, 0, 0, 0])
    score = np.array([0.9, 0.8, 0.3, 0.7, 0.2, 0.1, 0.05])
    labels = np.where(is_mel == 1, 0, 1)
    probs = np.stack([score, 1 - score, np.zeros_like(score)], axis=1)
    alert = calibrate_alert(labels, probs, CLASSES, "melanoma", 0.9)
    # all 3 melanomas need threshold 0.3, which also alerts on the 0.7 nevus
    assert (alert.threshold, alert.status) == (pytest.approx(0.3), "calibrated")
    chosen = evaluate(labels, probs, CLASSES, "melanoma", 0.8, 0.9, 5, alert_threshold=alert.threshold).metrics
    assert chosen["melanoma_alert_threshold"] == pytest.approx(0.3)
    assert (chosen["melanoma_alert_sensitivity"], chosen["melanoma_alert_specificity"]) == (1.0, 0.75)
    reused = evaluate(labels, probs, CLASSES, "melanoma", 0.8, 0.9, 5, alert_threshold=0.75).metrics
    assert reused["melanoma_alert_threshold"] == 0.75
    assert reused["melanoma_alert_sensitivity"] == pytest.approx(2 / 3)
    assert reused["melanoma_alert_specificity"] == pytest.approx(1.0)


# Scores where roc_curve's default (drop_intermediate=True) leaves out the operating points asked for.
# Vertical run: four melanomas above every nevus; 50% sensitivity needs only the top two (threshold 0.8).
VERTICAL = (np.array([1, 1, 1, 1, 0, 0]), np.array([0.9, 0.8, 0.7, 0.6, 0.2, 0.1]))
# Diagonal run: melanoma and nevus tied at 0.9, 0.8 and 0.7 (collinear ROC points), then a nevus and a melanoma.
DIAGONAL = (np.array([1, 0, 1, 0, 1, 0, 0, 1]), np.array([0.9, 0.9, 0.8, 0.8, 0.7, 0.7, 0.1, 0.05]))


def test_alert_threshold_is_the_highest_reaching_the_sensitivity():
    for is_mel, score in (VERTICAL, DIAGONAL):
        threshold = threshold_for_sensitivity(is_mel, score, 0.5)
        assert threshold == pytest.approx(0.8)  # main returned 0.6 and 0.7: alerts fired more often than intended
        assert (score[is_mel == 1] >= threshold).mean() >= 0.5
        higher = score[score > threshold].min()
        assert (score[is_mel == 1] >= higher).mean() < 0.5


def test_operating_points_read_every_roc_point():
    is_mel, score = DIAGONAL
    # at most 2 of 4 nevi alerted (threshold 0.8): 2 of 4 melanomas found (main: 1 of 4)
    assert sensitivity_at_specificity(is_mel, score, 0.5) == pytest.approx(0.5)
    # half the melanomas found at threshold 0.8, where 2 of 4 nevi are spared (main: 1 of 4)
    assert specificity_at_sensitivity(is_mel, score, 0.5) == pytest.approx(0.5)


def test_no_melanoma_in_validation_means_no_alert_threshold():
    labels = np.array([1, 1, 2, 2])
    probs = _probs([1, 0, 2, 2])
    alert = calibrate_alert(labels, probs, CLASSES, "melanoma", 0.9)
    assert alert.threshold is None and alert.status == "no_melanoma_in_validation"
    assert "no calibrated melanoma alert" in alert.note and "validation holds no melanoma" in alert.note
    assert alert.metadata()["melanoma_alert_threshold"] is None
    # evaluated without a threshold (Test of such a model): no alert metrics, none chosen on these labels
    test = evaluate(np.array([0, 0, 1, 2]), _probs([0, 1, 1, 2]), CLASSES, "melanoma", 0.8, 0.9, 5).metrics
    assert not {k for k in test if k.startswith("melanoma_alert")}
    assert calibrate_alert(labels, probs, ["a", "b", "c"], "melanoma", 0.9).status == "no_melanoma_class"


def test_absent_class_has_nan_recall_and_is_not_averaged():
    labels = np.array([0, 0, 1, 1])  # no "other" image
    predicted = [0, 2, 1, 1]  # one melanoma predicted as "other"
    result = evaluate(labels, _probs(predicted), CLASSES, "melanoma", 0.8, 0.9, 10)
    m, table = result.metrics, result.per_class
    assert np.isnan(m["recall_other"]) and np.isnan(m["f1_other"])  # main: 0.0 and 0.0
    assert np.isnan(table.loc[2, "recall"]) and np.isnan(table.loc[2, "f1"]) and table.loc[2, "support"] == 0
    assert m["classes_scored"] == 2
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1.0) / 2) == pytest.approx(table["recall"].mean())
    assert m["macro_f1"] == pytest.approx(table["f1"].mean())
    logged = pd.read_csv(io.StringIO(table.to_csv(index=False)))  # as RunTracker.log_table writes per_class.csv
    assert np.isnan(logged.loc[2, "recall"]) and logged.loc[1, "recall"] == 1.0
