"""Clean output: the libraries' chatter off unless asked for, no warning the project causes, each fact printed once."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from melanoma_lab.cli.quiet import quiet_libraries, requested_verbosity

REPO = Path(__file__).resolve().parents[1]


def test_only_variables_the_user_left_unset_are_set():
    environ = {"TF_CPP_MIN_LOG_LEVEL": "0"}
    chosen = quiet_libraries(["experiment=m2"], environ, terminal=False)
    assert environ == {"TF_CPP_MIN_LOG_LEVEL": "0", "MLFLOW_LOGGING_LEVEL": "WARNING",
                       "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    assert "TF_CPP_MIN_LOG_LEVEL" not in chosen and "TF_ENABLE_ONEDNN_OPTS" not in environ  # numerics untouched


def test_progress_bars_stay_on_a_terminal():
    environ: dict[str, str] = {}
    quiet_libraries([], environ, terminal=True)
    assert environ == {"TF_CPP_MIN_LOG_LEVEL": "2", "MLFLOW_LOGGING_LEVEL": "WARNING"}


@pytest.mark.parametrize("argv, loud", [(["trainer.verbose=3"], True), (["--multirun", "trainer.verbose=0,3"], True),
                                        (["++trainer.verbose=3"], True), (["trainer.verbose=2"], False),
                                        (["experiment=m2"], False)])
def test_trainer_verbose_3_keeps_the_libraries_logs(argv, loud):
    environ: dict[str, str] = {}
    quiet_libraries(argv, environ, terminal=True)
    assert ("TF_CPP_MIN_LOG_LEVEL" not in environ) is loud
    assert requested_verbosity(argv) == (None if argv == ["experiment=m2"] else int(argv[-1][-1]))


def _import_tensorflow_after_the_cli(**env: str) -> subprocess.CompletedProcess:
    script = textwrap.dedent("""
        import os
        from melanoma_lab.cli import main
        main(["--help"])
        import tensorflow as tf
        print(float(tf.reduce_sum(tf.ones((2, 2)))), os.environ.get("TF_ENABLE_ONEDNN_OPTS"))
        """)
    clean = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "MLFLOW_LOGGING_LEVEL")}
    return subprocess.run([sys.executable, "-c", script], env=clean | {"PYTHONPATH": str(REPO), **env},
                          capture_output=True, text=True, timeout=300)


# TensorFlow's C++ INFO lines at start-up; which ones depends on the CPU: "I0000 ... cpu_feature_guard.cc:...]" where
# the CPU has instructions the build does not use, "oneDNN custom operations are on" where oneDNN is on by default
# (an AMD EPYC without the latter failed the old check for that line alone)
TF_INFO_LINE = re.compile(r"^I\d{4} \S+ +\d+ \w+\.cc:\d+\]|oneDNN custom operations are on", re.MULTILINE)


@pytest.mark.slow  # two TensorFlow imports in fresh interpreters
def test_the_command_line_silences_tensorflow_start_up_lines_unless_the_user_set_the_level():
    quiet = _import_tensorflow_after_the_cli()
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.splitlines()[-1] == "4.0 None"
    assert "oneDNN" not in quiet.stderr and "absl" not in quiet.stderr, quiet.stderr
    assert not TF_INFO_LINE.search(quiet.stderr), quiet.stderr
    asked = _import_tensorflow_after_the_cli(TF_CPP_MIN_LOG_LEVEL="0")  # the user's choice wins
    assert TF_INFO_LINE.search(asked.stderr), asked.stderr


def test_fit_causes_no_keras_warning_and_verbose_3_prints_as_2():
    import keras
    import tensorflow as tf

    from melanoma_lab.training.fit import fit, keras_verbosity

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    data = tf.data.Dataset.from_tensor_slices((tf.ones((8, 4)), tf.one_hot([0, 1] * 4, 2))).shuffle(8).batch(4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(model, data, OmegaConf.create({"epochs": 1, "verbose": 0}), [])
    assert not [str(w.message) for w in caught if "keras" in w.filename], [str(w.message) for w in caught]
    assert keras_verbosity(OmegaConf.create({"verbose": 3})) == 2


def test_the_data_audit_is_logged_once_per_process(tiny_cfg, tmp_path, caplog, monkeypatch):
    from melanoma_lab.study import preparation

    monkeypatch.setattr(preparation, "_AUDITS_LOGGED", set())
    cfg = tiny_cfg()
    announced = []  # the Train copies of Test images set aside: said by the first job only, like the audit
    set_aside = preparation.set_aside_train_twins
    monkeypatch.setattr(preparation, "set_aside_train_twins",
                        lambda *args, announce: announced.append(announce) or set_aside(*args, announce=announce))
    with caplog.at_level(logging.INFO, logger="melanoma_lab.study.preparation"):
        for job in ("m1", "m2", "m3"):  # the jobs of one sweep
            preparation.load_audited_data(cfg.dataset, cfg.audit, tmp_path / job)
    assert announced == [True, False, False]
    messages = [r.getMessage() for r in caplog.records if r.name == "melanoma_lab.study.preparation"]
    assert sum("Data audit of" in m for m in messages) == 1, messages
    assert [m for m in messages if m.startswith("data audit as above")] == [
        f"data audit as above ({tmp_path / job / 'audit.json'})" for job in ("m2", "m3")]


def test_setting_aside_train_twins_is_said_only_when_announced(caplog):
    import pandas as pd

    from melanoma_lab.data.contamination import set_aside_train_twins

    files = pd.DataFrame({"path": ["train/a.jpg", "train/b.jpg", "test/a.jpg"], "split": ["train", "train", "test"]})
    report = {"test_train_twins": [{"test": "test/a.jpg", "train": "train/a.jpg", "match": "identical"}]}
    for announce, said in ((True, 1), (False, 0)):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="melanoma_lab.data.contamination"):
            kept = set_aside_train_twins(files, report, "exclude", announce=announce)
        assert list(kept["path"]) == ["train/b.jpg", "test/a.jpg"]  # set aside either way
        assert sum(r.levelno >= logging.INFO and "kept 1 Train copies" in r.getMessage()
                   for r in caplog.records) == said
