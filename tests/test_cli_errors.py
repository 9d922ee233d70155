"""A failed single run from the command line: a user error prints its message once, without a traceback, and exits
with status 2; so does a mistake Hydra finds while composing the config (one ``error:`` line, nearest names)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

def run_cli(tmp_path: Path, *overrides: str, patch: str = "") -> subprocess.CompletedProcess:
    """``python -m melanoma_lab OVERRIDES`` in a fresh interpreter, after ``patch`` (code);
    its last stdout line says whether TensorFlow (or Keras) was ever imported."""
    script = textwrap.dedent(f"""
        import runpy, sys
        {patch}
        sys.argv = ["melanoma_lab", *{list(overrides)!r}, "hydra.run.dir={tmp_path}/out", "paths.root_dir={tmp_path}"]
        try:
            runpy.run_module("melanoma_lab", run_name="__main__", alter_sys=True)  # python -m melanoma_lab
        finally:
            print("heavy modules loaded:", any(m in sys.modules for m in ("tensorflow", "keras")))
        """)
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MELANOMA_LAB_DATA")}
    env |= {"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)


def test_impossible_value_fails_at_composition_without_traceback_or_tensorflow(tmp_path):
    result = run_cli(tmp_path, "experiment=m2", "augmentation.flip.mode=diagonal")
    message = "augmentation.flip.mode='diagonal' must be one of horizontal, vertical, horizontal_and_vertical"
    assert result.returncode == 2, result.stderr
    assert result.stderr.count(message) == 1, result.stderr
    assert "Traceback" not in result.stderr and "MissingMandatoryValue" not in result.stderr
    assert "heavy modules loaded: False" in result.stdout  # refused before TensorFlow was imported


@pytest.mark.slow
def test_missing_dataset_prints_its_message_once_without_traceback(tmp_path):
    result = run_cli(tmp_path, f"dataset.root={tmp_path}/nonexistent")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count(f"No dataset found at {tmp_path}/nonexistent") == 1, result.stderr
    assert "Traceback" not in result.stderr and "MissingMandatoryValue" not in result.stderr


@pytest.mark.slow
def test_unreachable_tracking_server_is_a_user_error(tmp_path):
    result = run_cli(tmp_path, "dataset=synthetic", "dataset.source.train_images=45", "dataset.source.test_images=0",
                     "dataset.source.generated_size=32", "dataset.image_size=32", "tracking.tracking_uri=http://127.0.0.1:9")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("cannot reach the tracking server http://127.0.0.1:9") == 1, result.stderr
    assert "Traceback" not in result.stderr and "MissingMandatoryValue" not in result.stderr


@pytest.mark.slow
def test_a_bug_keeps_its_traceback_without_the_sweep_callback_warning(tmp_path):
    patch = ("import melanoma_lab.study.experiment\n"
             "        def broken(*args, **kwargs): raise RuntimeError('a bug in the code')\n"
             "        melanoma_lab.study.experiment.run_experiment = broken")
    result = run_cli(tmp_path, "dataset=synthetic", patch=patch)
    assert result.returncode == 1, result.stderr
    assert "Traceback" in result.stderr and "RuntimeError: a bug in the code" in result.stderr
    assert "MissingMandatoryValue" not in result.stderr


def melanoma_lab(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess:
    """``python -m melanoma_lab ARGUMENTS`` (the console script) in ``tmp_path``."""
    outside = ("MLFLOW_TRACKING_URI", "MELANOMA_LAB_DATA", "HYDRA_FULL_ERROR")
    env = {k: v for k, v in os.environ.items() if k not in outside}
    env |= {"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "melanoma_lab", *arguments], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def assert_one_error_line(result: subprocess.CompletedProcess, *expected: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr and "HYDRA_FULL_ERROR" not in result.stderr
    for text in expected:
        assert text in lines[0], lines[0]


@pytest.mark.parametrize("override,expected", [
    ("experiment=m9", ["experiment=m9", "did you mean m1, m2, m3, m4, m5, m6"]),
    ("optimizer=adamm", ["did you mean adam, adamw, sgd?"]),  # never the internal _schema, _sgd_schema, _common
    ("modle=cnn", ["modle=cnn", "did you mean model?"]),
    ("trainer.epocs=5", ["trainer has no key 'epocs'", "did you mean trainer.epochs?"]),
    ("+trainer.epocs=5", ["trainer.epocs: unknown key", "did you mean trainer.epochs?"]),  # Hydra's advice, refused
    ("trainer.epochs=[1", ["cannot parse override 'trainer.epochs=[1'"]),
    ("trainer.epochs=abc", ["trainer.epochs=abc", "could not be converted to Integer"]),
    ("trainer.monitor=val_bac", ["trainer.monitor='val_bac' must be one of", "val_balanced_accuracy"]),  # registry's
])
def test_a_mistake_on_the_command_line_is_one_error_line_and_exit_status_2(tmp_path, override, expected):
    result = run_cli(tmp_path, override)
    assert_one_error_line(result, *expected)
    assert "_schema" not in result.stderr and "_common" not in result.stderr
    assert "heavy modules loaded: False" in result.stdout


@pytest.mark.parametrize("command", ["study", "audit", "serve"])
@pytest.mark.slow
def test_hydra_commands_report_composition_errors_alike(tmp_path, command):
    assert_one_error_line(melanoma_lab(tmp_path, command, "experiment=m9", f"paths.root_dir={tmp_path}"),
                          "did you mean m1, m2")
    assert_one_error_line(melanoma_lab(tmp_path, command, "modle=cnn"), "did you mean model?")


def test_evaluate_reports_a_misspelt_dataset_with_its_options(tmp_path):
    assert_one_error_line(melanoma_lab(tmp_path, "evaluate", "dataset=isic", "model_uri=x"),
                          "dataset=isic", "isic9", "isic2019", "synthetic")


@pytest.mark.slow
def test_train_help_lists_the_groups_a_user_chooses_from(tmp_path):
    result = melanoma_lab(tmp_path, "train", "--help")
    assert result.returncode == 0, result.stderr
    assert "experiment: m1, m2, m3, m4, m5, m6" in result.stdout
    assert "optimizer: adam, adamw, sgd\n" in result.stdout and "tuner: bayesian, hyperband, random\n" in result.stdout
    assert "_schema" not in result.stdout and "_sgd_schema" not in result.stdout and "_common" not in result.stdout
    assert "epochs: 20" in result.stdout  # the keys, with their defaults


@pytest.mark.slow
def test_an_experiment_in_the_users_conf_dir_is_selected_by_name(tmp_path):
    """paths.conf_dir (<paths.root_dir>/conf) is on Hydra's search path: where tuner exports go, and a user's own
    configs, selectable like the package's; a hydra.searchpath given on the command line is kept too."""
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "mine.yaml").write_text(
        "# @package _global_\ndefaults:\n  - m2\n  - _self_\nname: mine\nmodel:\n  dropout: 0.4\n")
    (tmp_path / "other" / "trainer").mkdir(parents=True)
    (tmp_path / "other" / "trainer" / "tiny.yaml").write_text("defaults: [default, _self_]\nepochs: 2\n")
    result = melanoma_lab(tmp_path, "experiment=mine", "trainer=tiny", f"hydra.searchpath=[file://{tmp_path}/other]",
                          "--cfg", "job")
    assert result.returncode == 0, result.stderr
    assert "name: mine" in result.stdout and "dropout: 0.4" in result.stdout and "epochs: 2" in result.stdout
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = melanoma_lab(elsewhere, "experiment=mine", f"paths.root_dir={tmp_path}", "--cfg", "job")
    assert result.returncode == 0 and "name: mine" in result.stdout, result.stderr
    assert_one_error_line(melanoma_lab(elsewhere, "experiment=mine"), "did you mean m1")  # ./conf: none here
