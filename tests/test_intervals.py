"""Issue 26 point 4: intervals resample the split's groups (copies and one lesion's images together), the study
report puts an interval on every headline metric, and runs logged without group ids fall back to images, saying so.
Synthetic prediction tables: no training."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from melanoma_lab.evaluation.bootstrap import IMAGES_ONLY, groups_of, replicate_rows
from melanoma_lab.evaluation.scores import frequent_balanced_accuracy
from melanoma_lab.reporting import tables
from melanoma_lab.reporting.selection import Study, StudyRun
from melanoma_lab.reporting.statistics import bootstrap_interval, paired_difference, report_intervals
from melanoma_lab.study.evaluation_log import predictions_table

CLASSES = ["melanoma", "nevus", "other"]
LESIONS, COPIES = 60, 4  # 60 lesions, each pictured 4 times and scored alike: 240 images, 60 independent cases


def _lesions(accuracy: float = 0.7, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, LESIONS)
    predicted = np.where(rng.random(LESIONS) < accuracy, labels, (labels + 1) % 3)
    return labels, predicted


def _table(labels, predicted, groups=None, threshold=None) -> pd.DataFrame:
    """Image i shows lesion i % LESIONS (so lesion k is first seen at row k); p(melanoma) high where predicted."""
    n = len(labels) * COPIES
    lesion = np.arange(n) % len(labels)
    probs = np.eye(3)[predicted[lesion]] * 0.7 + 0.1
    probs[:, 0] += np.linspace(0, 0.05, len(labels))[lesion]  # distinct melanoma scores per lesion
    table = pd.DataFrame(probs / probs.sum(axis=1, keepdims=True), columns=[f"p_{c}" for c in CLASSES])
    table.insert(0, "label", labels[lesion])
    table.insert(0, "path", [f"img{i:04d}" for i in range(n)])
    if groups is not None:
        table.insert(2, "group", [f"lesion{k}" for k in lesion])
    if threshold is not None:
        table["alert_threshold"] = threshold
    return table


def test_correlated_copies_widen_the_interval_to_the_hand_computed_group_bootstrap():
    labels, predicted = _lesions()
    grouped = _table(labels, predicted, groups=True)
    one_by_one = grouped.drop(columns="group")  # a run logged before the group column
    low, high = bootstrap_interval({1: grouped}, 400, 0.95, seed=3)
    image_low, image_high = bootstrap_interval({1: one_by_one}, 400, 0.95, seed=3)
    assert high - low > 1.5 * (image_high - image_low)  # 4 copies: about twice as wide (sqrt 4)

    rng = np.random.default_rng(3)  # by hand: lesions drawn with replacement, each with its 4 images
    every = np.arange(3)
    by_hand = [frequent_balanced_accuracy(np.repeat(labels[draw], COPIES), np.repeat(predicted[draw], COPIES), every)
               for draw in rng.integers(0, LESIONS, (400, LESIONS))]
    assert (low, high) == pytest.approx(tuple(np.quantile(by_hand, [0.025, 0.975])), abs=1e-12)

    rng = np.random.default_rng(3)  # without group ids: the plain image bootstrap, as before
    n = LESIONS * COPIES
    image_hand = [frequent_balanced_accuracy(grouped["label"].to_numpy()[d], np.tile(predicted, COPIES)[d], every)
                  for d in rng.integers(0, n, (400, n))]
    assert (image_low, image_high) == pytest.approx(tuple(np.quantile(image_hand, [0.025, 0.975])), abs=1e-12)


def test_paired_differences_resample_groups_and_say_what_they_drew():
    labels, worse = _lesions(0.5, 1)
    _, better = _lesions(0.8, 2)
    grouped = paired_difference({1: _table(labels, worse, True)}, {1: _table(labels, better, True)}, 300, 0.95)
    images = paired_difference({1: _table(labels, worse)}, {1: _table(labels, better)}, 300, 0.95)
    assert grouped["delta"] == pytest.approx(images["delta"])
    assert grouped["high"] - grouped["low"] > 1.5 * (images["high"] - images["low"])
    assert grouped["resampled"] == f"{LESIONS} split groups of {LESIONS * COPIES} images"
    assert images["resampled"] == IMAGES_ONLY


def test_groups_join_across_runs_and_replicates_keep_them_whole():
    a = pd.DataFrame({"path": ["x", "y", "z", "w"], "group": ["g1", "g1", "g2", "g3"]})
    b = pd.DataFrame({"path": ["w", "z", "y", "x"], "group": ["h9", "h9", "h1", "h2"]})  # z and w: one lesion here
    codes = groups_of([a, b], ["w", "x", "y", "z"])
    assert codes[1] == codes[2] and codes[0] == codes[3] and codes[0] != codes[1]
    assert groups_of([a, b.drop(columns="group")], ["x"]) is None  # one run logged none: images
    for rows in replicate_rows(codes, 30, 0):
        assert (np.isin(rows, [0, 3]).sum() % 2, np.isin(rows, [1, 2]).sum() % 2) == (0, 0)


def _study(held_out: str, runs: list[StudyRun]) -> Study:
    return Study("s", runs, CLASSES, None, held_out, pd.DataFrame(), melanoma_class="melanoma",
                 frequent_class_images=10)


def test_the_report_shows_intervals_on_auc_and_the_alert_resampling_groups():
    labels, predicted = _lesions(0.8)
    runs = [StudyRun(f"r{s}", "m1", s, {}, {"val_melanoma_alert_threshold": 0.5}, {},
                     {"test": _table(labels, _lesions(0.8, s)[1], True)}) for s in (1, 2)]
    row = tables.results_table(_study("test", runs), 200, 0.95).iloc[0]
    for metric in ("balanced acc (classes >= 10 images)", "melanoma ROC-AUC", "alert sensitivity",
                   "alert specificity"):
        mean, low, high = map(float, row[f"test {metric} 95% CI"].replace("[", "").replace("]", "").replace(",", "")
                              .split())
        assert low <= mean <= high and high > low, metric
    assert row["test CI resamples"] == f"{LESIONS} split groups of {LESIONS * COPIES} images"
    clean = tables.full_and_clean_table(_study("test", runs), 100, 0.95).iloc[0]
    assert "full melanoma ROC-AUC 95% CI" in clean and "full alert specificity 95% CI" in clean

    found, how = report_intervals({1: runs[0].predictions["test"].assign(alert_threshold=2.0)}, CLASSES, "melanoma",
                                  100, 0.95)
    assert found["melanoma_alert_sensitivity"][:3] == (0.0, 0.0, 0.0)  # a threshold no image reaches: no alert


def test_out_of_fold_alerts_use_each_images_own_fold_threshold_and_old_runs_fall_back_to_images():
    labels, predicted = _lesions(0.8)
    table = _table(labels, predicted, threshold=np.where(np.arange(LESIONS * COPIES) % 2, 0.0, 2.0))
    found, how = report_intervals({1: table}, CLASSES, "melanoma", 100, 0.95)
    melanoma = table["label"].to_numpy() == 0
    odd = np.arange(len(table)) % 2 == 1  # threshold 0: always alerts; threshold 2: never
    assert found["melanoma_alert_sensitivity"][0] == pytest.approx(odd[melanoma].mean())
    assert found["melanoma_alert_specificity"][0] == pytest.approx((~odd)[~melanoma].mean())
    assert how == IMAGES_ONLY
    run = StudyRun("r", "m1", 1, {}, {}, {}, {"oof": table})
    assert tables.results_table(_study("oof", [run]), 50, 0.9).iloc[0]["oof CI resamples"] == IMAGES_ONLY


def test_predictions_tables_carry_the_split_group():
    files = pd.DataFrame({"path": ["a.jpg", "b.jpg"], "group": ["group7", "group7"], "train_twin": [False, True]})
    result = SimpleNamespace(probabilities=np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1]]), labels=np.array([0, 1]))
    table = predictions_table(result, files, CLASSES)
    assert list(table.columns[:4]) == ["path", "label", "group", "train_twin"]
    assert list(table["group"]) == ["group7", "group7"]
    assert "group" not in predictions_table(result, files.drop(columns="group"), CLASSES)
