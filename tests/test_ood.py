"""The input check (issue 26, point 8): generated non-lesions are flagged, validation lesions are not, and the check
travels with the model (predict and serving: tests/test_predict.py)."""

import json

import numpy as np
import pytest

from melanoma_lab.config.schema import validate
from melanoma_lab.data.synthetic import STYLES, render_lesion
from melanoma_lab.errors import ConfigError
from melanoma_lab.evaluation.inference import ModelSettings
from melanoma_lab.evaluation.non_lesions import KINDS, non_lesions
from melanoma_lab.evaluation.ood import UNAVAILABLE_NOTE, InputCheck, conformal_threshold

from conftest import TINY, TINY_DATA, compose_config

SIZE = 32  # the tiny trained model's input size


@pytest.fixture(scope="module")
def lesions():
    """Synthetic dermoscopy-like lesions of every class: 600 to fit, 300 validation, 300 held out."""
    rng = np.random.default_rng(7)
    styles = list(STYLES.values())
    images = np.stack([render_lesion(styles[i % len(styles)], SIZE, rng) for i in range(1200)])
    return images[:600], images[600:900], images[900:]


def test_generated_non_lesions_are_flagged_and_validation_lesions_are_not(lesions):
    training, validation, held_out = lesions
    check = InputCheck.fit(training, validation, target_rate=0.01)
    images, kinds = non_lesions(350, SIZE, seed=3)  # blank, solid, noise, text, gradient, pattern, clouds
    flagged = check.scores(images) > check.threshold
    missed = sorted({kind for kind, flag in zip(kinds, flagged) if not flag})
    assert flagged.mean() >= 0.99, f"only {flagged.mean():.1%} of non-lesions flagged (missed kinds: {missed})"
    for kind in KINDS:  # every kind, not only the easy ones
        assert np.mean([f for k, f in zip(kinds, flagged) if k == kind]) >= 0.95, kind
    assert check.validation_rate <= 0.02 and check.flag_rate(validation) == check.validation_rate
    assert check.flag_rate(held_out) <= 0.02  # lesions it was neither fitted nor calibrated on


def test_the_check_travels_in_metadata_and_old_models_are_not_silently_unflagged(lesions):
    training, validation, _ = lesions
    check = InputCheck.fit(training, validation, target_rate=0.02)
    metadata = {"classes": ["melanoma", "nevus"], "image_size": SIZE, "melanoma_class": "melanoma",
                "melanoma_alert_threshold": 0.0}
    logged = ModelSettings.from_metadata(json.loads(json.dumps(metadata | check.metadata())))  # as MLflow keeps it
    blank = np.full((SIZE, SIZE, 3), 255, np.uint8)
    flags, scores = logged.out_of_distribution([blank, validation[0], None])
    assert flags[0] is True and scores[0] > logged.input_check.threshold and flags[2] is None and scores[2] is None
    assert scores[1] == pytest.approx(float(check.scores(validation[:1])[0]))
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [np.nan, np.nan]])
    assert logged.alerts(probabilities, flags) == [False, not flags[1], None]  # flagged: never an alert
    old = ModelSettings.from_metadata(metadata)  # logged before the input check
    assert old.input_check is None and old.ood_note == UNAVAILABLE_NOTE
    assert old.out_of_distribution([blank]) == ([None], [None])  # not checked: None, not False
    assert old.alerts(probabilities[:1], [None]) == [True]
    other = metadata | {"input_check": {**check.metadata()["input_check"], "statistics": ["mean_red"]}}
    assert ModelSettings.from_metadata(other).input_check is None


def test_the_threshold_is_a_conformal_quantile_of_validation():
    scores = np.arange(1, 201, dtype=float)  # 200 validation scores
    assert conformal_threshold(scores, 0.01) == 199.0  # ceil(201 * 0.99) = 199th smallest: 1 of 200 above
    assert conformal_threshold(scores[:20], 0.01) == 20.0  # too few for 1%: the largest


def test_the_flag_rate_is_a_checked_config_value(tmp_path):
    assert compose_config(TINY, tmp_path).evaluation.ood_flag_rate == 0.01  # conf/evaluation/default.yaml
    with pytest.raises(ConfigError, match="evaluation.ood_flag_rate"):
        validate(compose_config(TINY + ["evaluation.ood_flag_rate=0.7"], tmp_path))


def test_ood_check_measures_both_rates_on_grouped_folds_of_a_dataset(tmp_path, shared_cache, capsys):
    from melanoma_lab.cli import ood_check

    out = tmp_path / "rates"
    assert ood_check.main(["--folds", "2", "--non-lesions", "28", "--out", str(out), *TINY_DATA,
                           f"paths.cache_dir={shared_cache}", f"paths.root_dir={tmp_path}"]) == 0
    assert "real lesions flagged:" in capsys.readouterr().out
    totals = json.loads((out / "ood_flag_rates.json").read_text())
    assert totals["folds"] == 2 and totals["non_lesions"] == 28 and totals["non_lesions_flagged"] >= 0.9
    assert 110 <= totals["lesions"] <= 120 and totals["lesions_flagged_held_out"] <= 0.2  # each audited image once
    assert len((out / "ood_flag_rates.csv").read_text().splitlines()) == 3
