"""Bad input on disk: every case gets a named diagnosis and training still runs on the good files."""

import os

import numpy as np
import pytest
from PIL import Image

from melanoma_lab.data.audit import audit_catalog
from melanoma_lab.data.catalog import scan
from melanoma_lab.data.pipeline import decode
from melanoma_lab.data.synthetic import generate
from melanoma_lab.study.experiment import run_experiment
from melanoma_lab.study.preparation import UnreadableImagesError

pytestmark = pytest.mark.faults


@pytest.fixture
def messy(tmp_path):
    root = generate(tmp_path / "data", ["melanoma", "nevus", "vascular lesion"], 45, 9, 32, seed=2)
    nevus = root / "Train" / "nevus"
    good = sorted(nevus.iterdir())[0].read_bytes()
    (nevus / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (nevus / "zero.jpg").write_bytes(b"")
    (nevus / "text.jpg").write_text("hello")
    Image.new("RGBA", (40, 30), (200, 10, 10, 128)).save(nevus / "alpha.png")
    Image.new("L", (64, 64), 100).save(nevus / "grey.jpg")
    os.symlink(nevus / "loop.jpg", nevus / "loop.jpg")
    (root / "Train" / "melanoma" / os.fsdecode(b"bad\xffname.jpg")).write_bytes(good)
    for image in (root / "Test" / "vascular lesion").iterdir():  # a class missing from Test
        image.unlink()
    (root / "Test" / "vascular lesion").rmdir()
    return root


def test_each_bad_file_gets_a_named_diagnosis(messy):
    catalog = scan(messy, [".jpg", ".png"])
    report = audit_catalog(catalog, near_duplicate_distance=0)
    unreadable = {os.path.basename(p): reason for p, reason in report["unreadable_files"].items()}
    assert set(unreadable) == {"truncated.jpg", "zero.jpg", "text.jpg"}
    assert all(reason.split(":")[0] in ("OSError", "UnidentifiedImageError") for reason in unreadable.values())
    assert any("loop.jpg" in entry for entry in report["unexpected_entries"])
    assert any("not UTF-8" in entry for entry in report["unexpected_entries"])
    decoded = decode(catalog.files, catalog.classes, 32)
    assert {os.path.basename(p) for p in decoded.failures} == {"truncated.jpg", "zero.jpg", "text.jpg"}
    assert decoded.images.shape[1:] == (32, 32, 3)  # the RGBA and grey images decode as RGB


def test_decompression_bomb_is_refused_not_decoded(tmp_path):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (12000, 12000)).save(bomb)  # 144 M pixels, a few KB on disk
    decoded = decode(__import__("pandas").DataFrame({"path": [str(bomb)], "label": ["a"]}), ["a"], 16)
    assert "DecompressionBomb" in decoded.failures[str(bomb)]


@pytest.mark.slow
def test_skip_policy_trains_on_the_good_files_and_fail_policy_stops_before_training(messy, tmp_path):
    from tests.conftest import TINY_RUN, compose_config

    base = TINY_RUN + [f"dataset.root={messy}", "dataset.image_size=32", "tracking.log_model=false",
                       "++dataset.source.extensions=[.jpg,.png]"]
    results = run_experiment(compose_config(base, root=tmp_path), tmp_path / "skip")
    assert np.isfinite(results["val_balanced_accuracy"]) and "test_balanced_accuracy" in results
    with pytest.raises(UnreadableImagesError, match="truncated.jpg"):
        run_experiment(compose_config(base + ["dataset.on_unreadable=fail"], root=tmp_path / "f"), tmp_path / "fail")


def test_a_full_artifact_store_fails_the_run_clearly_and_keeps_what_was_logged(tiny_cfg, tmp_path, monkeypatch):
    import errno

    import mlflow

    from melanoma_lab.tracking.store import TrackingUnavailableError, tracking_uri

    def disk_full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mlflow.tracking.MlflowClient, "log_figure", disk_full)
    with pytest.raises(TrackingUnavailableError, match="No space left on device.*free disk space"):
        run_experiment(tiny_cfg("tracking.log_model=false", "trainer.epochs=2"), tmp_path / "out")
    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    (run,) = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])
    assert run.info.status == "FAILED" and "No space left" in run.data.tags["error"]
    assert run.data.params["trainer.epochs"] == "2"


@pytest.mark.slow
def test_sigterm_during_training_leaves_the_run_killed(tmp_path, shared_cache):
    import signal
    import subprocess
    import sys
    import time

    import mlflow

    from melanoma_lab.tracking.store import tracking_uri
    from tests.conftest import TINY

    job = subprocess.Popen([sys.executable, "-m", "melanoma_lab", *TINY, "trainer.epochs=200", "tracking.log_model=false",
                            f"paths.cache_dir={shared_cache}", f"paths.root_dir={tmp_path}"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob("experiments/runs/*/*/checkpoints/best.keras")):
        time.sleep(0.5)  # the best checkpoint appears after the first epoch
    time.sleep(2)
    job.send_signal(signal.SIGTERM)
    job.wait(timeout=60)
    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    (run,) = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])
    assert run.info.status == "KILLED"
    assert 2 <= len(client.get_metric_history(run.info.run_id, "val_loss")) < 200
