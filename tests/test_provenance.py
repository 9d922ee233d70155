"""The code version in every run's identity, and what resolved at run time."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from melanoma_lab.tracking.provenance import cpu_model, git_code_version, source_code_version
from melanoma_lab.tracking.store import tracking_uri
from tests.conftest import TINY

REPO = Path(__file__).resolve().parents[1]
GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org", "-c", "commit.gpgsign=false"]


def _repository(root: Path, *extra: str) -> Path:
    """A git checkout at ``root`` holding this working tree's package and configs (committed)."""
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "melanoma_lab", root / "melanoma_lab", ignore=ignore)
    shutil.copytree(REPO / "conf", root / "conf", ignore=ignore)
    (root / "README.md").write_text("readme\n")
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "copy"]):
        subprocess.run(GIT + list(command), cwd=root, check=True, capture_output=True)
    return root


def test_code_version_follows_uncommitted_and_untracked_code_but_not_other_files(tmp_path):
    root = _repository(tmp_path / "repo")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout
    clean = git_code_version(root)
    assert clean == commit[:12]
    (root / "README.md").write_text("edited\n")  # outside melanoma_lab/ and conf/
    assert git_code_version(root) == clean
    plots = root / "melanoma_lab" / "evaluation" / "plots.py"
    plots.write_text(plots.read_text() + "# one more line\n")
    edited = git_code_version(root)
    assert edited.startswith(clean + "+") and edited != clean
    (root / "conf" / "trainer" / "mine.yaml").write_text("epochs: 3\n")  # untracked config
    untracked = git_code_version(root)
    assert untracked not in (clean, edited)
    (root / "conf" / "trainer" / "mine.yaml").write_text("epochs: 4\n")
    assert git_code_version(root) != untracked
    assert git_code_version(root / "melanoma_lab") is None  # not the top of the checkout


def test_outside_git_the_code_version_is_the_package_version_plus_a_source_hash(tmp_path):
    shutil.copytree(REPO / "melanoma_lab", tmp_path / "melanoma_lab")
    before = source_code_version(tmp_path / "melanoma_lab")
    assert before.startswith("0.1.0+src-") or before.startswith("unknown+src-")
    (tmp_path / "melanoma_lab" / "evaluation" / "plots.py").write_text("# changed\n")
    assert source_code_version(tmp_path / "melanoma_lab") != before


def _run(clone: Path, workdir: Path, cache: Path) -> subprocess.CompletedProcess:
    """One tiny experiment with the package imported from ``clone``, run from ``workdir`` (not the clone)."""
    overrides = TINY + ["experiment=m1", "imbalance=none", "tracking.log_model=false", "callbacks.checkpoint=null",
                        "evaluation.tta=false", f"paths.root_dir={workdir}", f"paths.cache_dir={cache}"]
    env = {**os.environ, "PYTHONPATH": str(clone), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "melanoma_lab", *overrides], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_source_change_in_the_checkout_trains_again_an_unchanged_rerun_is_reused(tmp_path, shared_cache):
    clone, workdir = _repository(tmp_path / "clone"), tmp_path / "work"
    workdir.mkdir()
    first = _run(clone, workdir, shared_cache)
    assert first.returncode == 0, first.stderr[-3000:]
    again = _run(clone, workdir, shared_cache)
    assert again.returncode == 0, again.stderr[-3000:]
    client = mlflow.tracking.MlflowClient(tracking_uri(None, workdir / "mlruns"))
    experiment_id = client.get_experiment_by_name("melanoma-study").experiment_id
    (run,) = client.search_runs([experiment_id])
    said = again.stdout + again.stderr  # Hydra logs to stdout
    assert f"reusing run {run.info.run_id}" in said and "tracking.skip_finished=false" in said

    plots = clone / "melanoma_lab" / "evaluation" / "plots.py"
    plots.write_text(plots.read_text().replace('"""', '""" Edited.', 1))  # one source line, not committed
    changed = _run(clone, workdir, shared_cache)
    assert changed.returncode == 0, changed.stderr[-3000:]
    runs = client.search_runs([experiment_id], order_by=["start_time ASC"])
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    old, new = (r.data.tags["code_version"] for r in runs)
    assert old == run.data.tags["code_version"] and new.startswith(old + "+")
    assert runs[0].data.tags["config_hash"] == runs[1].data.tags["config_hash"]


@pytest.mark.parametrize("precision", ["float32", "auto"])
@pytest.mark.slow
def test_runtime_facts_are_tags_of_the_run(tiny_cfg, tmp_path, precision):
    from melanoma_lab.study.experiment import run_experiment
    from melanoma_lab.runtime import cpu_has_bfloat16

    cfg = tiny_cfg("experiment=m1", f"trainer.precision={precision}", "tracking.log_model=false")
    run_experiment(cfg, tmp_path / "run")
    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    (run,) = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])
    tags = run.data.tags
    resolved = "float32" if precision == "float32" or not cpu_has_bfloat16() else "mixed_bfloat16"
    assert tags["runtime.precision"] == resolved
    assert tags["runtime.keras_backend"] == "tensorflow"
    assert tags["runtime.device"] == cpu_model() and tags["runtime.device"] != "unknown"
    assert tags["runtime.cpu_cores"] == str(len(os.sched_getaffinity(0)))
    assert tags["code_version"]
