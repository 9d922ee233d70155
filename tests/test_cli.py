"""One command line: ``melanoma-lab <command> [options] [key=value ...]``, from any folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from melanoma_lab.cli import COMMANDS, main, split_command

REPO = Path(__file__).resolve().parents[1]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MELANOMA_LAB_DATA")}
    return env | {"TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def test_the_command_list_names_every_command(capsys):
    assert main(["--help"]) == 0
    listed = capsys.readouterr().out
    for name, command in COMMANDS.items():
        assert f"  {name} " in listed and command.summary in listed


@pytest.mark.parametrize("argv, command, rest", [
    ([], "train", []),
    (["experiment=m2", "trainer=smoke"], "train", ["experiment=m2", "trainer=smoke"]),
    (["--multirun", "experiment=m1,m2"], "train", ["--multirun", "experiment=m1,m2"]),
    (["+callbacks.nan={_target_: keras.callbacks.TerminateOnNaN}"], "train",
     ["+callbacks.nan={_target_: keras.callbacks.TerminateOnNaN}"]),
    (["predict", "a.jpg", "--json"], "predict", ["a.jpg", "--json"]),
    (["stale-runs", "--end"], "stale-runs", ["--end"]),
])
def test_the_first_word_names_the_command_and_train_is_the_default(argv, command, rest):
    assert split_command(argv) == (command, rest)


def test_a_misspelt_command_exits_2_with_the_nearest_names(capsys):
    assert main(["stdy", "study.name=x"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: unknown command 'stdy' (did you mean study?)") and error.count("\n") == 1
    assert main(["promot"]) == 2
    assert "did you mean promote?" in capsys.readouterr().err


@pytest.mark.slow  # 20 commands' help in one interpreter: ~35 s
def test_every_command_prints_its_own_help():
    """``melanoma-lab <command> --help`` for every command: exit 0, its own usage (argparse commands name
    themselves ``melanoma-lab <command>``; Hydra apps list their config groups)."""
    script = textwrap.dedent("""
        import contextlib, io, json, sys
        from hydra.core.global_hydra import GlobalHydra
        from melanoma_lab.cli import COMMANDS, main
        results = {}
        for name in COMMANDS:
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                try:
                    status = main([name, "--help"])
                except SystemExit as exit:
                    status = exit.code
            GlobalHydra.instance().clear()
            results[name] = [status or 0, out.getvalue()]
        print(json.dumps(results))
        """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=clean_env(),
                            cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    helps = json.loads(result.stdout.strip().splitlines()[-1])
    for name, command in COMMANDS.items():
        status, text = helps[name]
        assert status == 0, (name, text)
        if command.hydra or name == "train":  # Hydra's app help: the groups, without internal _schema options
            assert "experiment: m1, m2" in text and "group=option" in text, (name, text[:500])
            assert "_schema" not in text, (name, text[:500])
        else:
            assert text.startswith(f"usage: melanoma-lab {name}"), (name, text[:200])


@pytest.mark.slow  # two command lines in their own processes, one of them training: ~45 s
def test_train_and_predict_work_from_another_folder(tmp_path):
    """The console script composes the package's conf/ wherever it is run (it used to fail outside the repository:
    "Primary config module 'conf' not found"), and predict reads the run it wrote."""
    script = Path(sys.executable).with_name("melanoma-lab")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "melanoma_lab"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    tiny = ["dataset.source.train_images=45", "dataset.source.test_images=9", "dataset.source.generated_size=32",
            "dataset.image_size=32", "trainer.epochs=1"]
    train = subprocess.run([*command, "experiment=m1", "dataset=synthetic", "trainer=smoke", *tiny,
                            f"paths.root_dir={tmp_path}"], cwd=elsewhere, env=clean_env(), capture_output=True,
                           text=True, timeout=600)
    assert train.returncode == 0, train.stderr[-3000:]
    assert "[m1] " in train.stdout

    import mlflow

    from melanoma_lab.tracking.store import tracking_uri

    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    (run,) = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])
    image = next((tmp_path / "data").rglob("*.jpg"))
    predict = subprocess.run([*command, "predict", str(image), "--model", f"runs:/{run.info.run_id}/model", "--json",
                              f"paths.root_dir={tmp_path}"], cwd=elsewhere, env=clean_env(), capture_output=True,
                             text=True, timeout=600)
    assert predict.returncode == 0, predict.stderr[-3000:]
    (prediction,) = json.loads(predict.stdout)["predictions"]
    assert prediction["path"] == str(image) and abs(sum(prediction["probabilities"].values()) - 1) < 1e-4


@pytest.mark.slow  # builds a wheel and runs a command from it: ~30 s
def test_an_installed_wheel_carries_conf_and_runs_from_any_folder(tmp_path):
    """A non-editable install (a wheel) ships conf/ inside the package: before, the wheel held melanoma_lab/ alone
    and every command failed with "Primary config module 'conf' not found"."""
    import shutil
    import zipfile

    source = tmp_path / "source"  # a copy: building in the checkout would leave build/ there
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, source / name)
    for folder in ("melanoma_lab", "conf"):
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("melanoma_lab-*.whl")
    shipped = {name.removeprefix("melanoma_lab/conf/") for name in zipfile.ZipFile(wheel).namelist()
               if name.startswith("melanoma_lab/conf/")}
    assert shipped == {str(p.relative_to(REPO / "conf")) for p in (REPO / "conf").rglob("*.yaml")}
    site = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                                str(wheel)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    audit = subprocess.run([sys.executable, "-m", "melanoma_lab", "audit", "dataset=synthetic",
                            "dataset.source.train_images=45", "dataset.source.test_images=9",
                            f"paths.root_dir={tmp_path}"], cwd=elsewhere, env=clean_env(PYTHONPATH=str(site)),
                           capture_output=True, text=True, timeout=300)
    assert audit.returncode == 0, audit.stderr[-3000:]
    assert "audit written to" in audit.stdout
    where = subprocess.run([sys.executable, "-c", "import melanoma_lab.config.compose as c; print(c.CONF_DIR)"],
                           cwd=elsewhere, env=clean_env(PYTHONPATH=str(site)), capture_output=True, text=True)
    assert Path(where.stdout.strip()) == site / "melanoma_lab" / "conf"
