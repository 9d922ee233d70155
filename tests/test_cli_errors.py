"""A failed single run from the command line: a user error prints its message once, without a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

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


def test_missing_dataset_prints_its_message_once_without_traceback(tmp_path):
    result = run_cli(tmp_path, f"dataset.root={tmp_path}/nonexistent")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count(f"No dataset found at {tmp_path}/nonexistent") == 1, result.stderr
    assert "Traceback" not in result.stderr and "MissingMandatoryValue" not in result.stderr


def test_unreachable_tracking_server_is_a_user_error(tmp_path):
    result = run_cli(tmp_path, "dataset=synthetic", "dataset.source.train_images=45", "dataset.source.test_images=0",
                     "dataset.source.generated_size=32", "dataset.image_size=32", "tracking.tracking_uri=http://127.0.0.1:9")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("cannot reach the tracking server http://127.0.0.1:9") == 1, result.stderr
    assert "Traceback" not in result.stderr and "MissingMandatoryValue" not in result.stderr


def test_a_bug_keeps_its_traceback_without_the_sweep_callback_warning(tmp_path):
    patch = ("import melanoma_lab.study.experiment\n"
             "        def broken(*args, **kwargs): raise RuntimeError('a bug in the code')\n"
             "        melanoma_lab.study.experiment.run_experiment = broken")
    result = run_cli(tmp_path, "dataset=synthetic", patch=patch)
    assert result.returncode == 1, result.stderr
    assert "Traceback" in result.stderr and "RuntimeError: a bug in the code" in result.stderr
    assert "MissingMandatoryValue" not in result.stderr
