"""The benchmark's measuring parts (the benchmark itself is `make bench`, not a test)."""

import time

import keras
import numpy as np
import pytest

from melanoma_lab.bench import backends
from melanoma_lab.bench import throughput as bench


def test_fit_timer_times_every_fit_in_the_process(monkeypatch):
    monkeypatch.setattr(keras.Model, "fit", keras.Model.fit)  # restored after the test
    timer = bench.FitTimer(time.perf_counter())
    timer.install()
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = np.random.default_rng(0).normal(size=(64, 4)), np.arange(64) % 2
    model.fit(x, y, batch_size=bench.BATCH, epochs=3, validation_data=(x, y), verbose=0)
    assert len(timer.epochs) == 3 and all(e["images"] == 64 for e in timer.epochs)
    summary = timer.summary(wall_s=1.0)
    assert summary["images_per_s"] > 0 and 0 < summary["time_to_first_batch_s"] < 60
    assert summary["final_val_accuracy"] == timer.epochs[-1]["val_accuracy"] is not None
    assert summary["peak_rss_mb"] > 50


def test_table_ends_with_the_machine_readable_line():
    variant = {"images_per_s": 700.0, "time_to_first_batch_s": 8.0, "validation_s": 0.5, "wall_s": 23.0,
               "peak_rss_mb": 2500.0, "final_val_accuracy": 0.49}
    results = {"variants": {"seed": variant, "lab": variant}, "augmentor_images": 4500, "augmentor_workers": 2,
               "augmentor_cold_s": 4.6, "augmentor_warm_s": 0.006, "speedup_vs_seed": 1.75,
               "tracked_epochs": 12, "tracking_seconds": 0.5, "tracking_overhead": 0.012, "tracking_overhead_wall": 0.02,
               "scaling": [{"factor": 1, "images": 10, "epoch_s": 1.0, "seconds_per_1000_images": 100.0}]}
    assert bench.format_table(results).splitlines()[-1] == "speedup_vs_seed=1.75 tracking_overhead=0.012"
    results["backends"] = {"tensorflow": variant | {"status": "ok", "version": "2.21.0"},
                           "jax": {"status": "failed", "error": "Traceback\nValueError: no"},
                           "torch": {"status": "not installed"}}
    table = bench.format_table(results).splitlines()
    assert table[-4:-1] == ["tensorflow       700         2500     23.0    0.490  2.21.0", "jax        failed: ValueError: no",
                            "torch      not installed"]
    assert table[-1] == "speedup_vs_seed=1.75 tracking_overhead=0.012"


def test_backends_option_names_keras_backends_and_rejects_others(capsys):
    import pytest

    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--backends", "tensorflow,mxnet"])
    assert exit_info.value.code == 2 and "--backends takes tensorflow,jax,torch" in capsys.readouterr().err


def _tiny_arrays(folder):
    rng = np.random.default_rng(0)
    for split, count in (("train", 64), ("val", 32)):
        backends.save_arrays(folder, split, rng.integers(0, 256, (count, 32, 32, 3)), np.arange(count) % 3)
    return folder


@pytest.mark.slow
def test_each_installed_backend_trains_the_same_model_on_the_same_arrays(tmp_path):
    results = backends.compare_backends(_tiny_arrays(tmp_path / "arrays"), epochs=2, repeats=1)
    assert list(results) == list(backends.BACKENDS)
    for name, result in results.items():
        if not backends.installed(name):  # e.g. no jax / torch in this environment
            assert result == {"status": "not installed"}
            continue
        assert result["status"] == "ok", result.get("error")
        assert result["keras_backend"] == name and result["version"] != "unknown"
        assert result["images_per_s"] > 0 and result["peak_rss_mb"] > 50 and result["final_val_accuracy"] is not None


@pytest.mark.slow
def test_a_backend_that_is_missing_or_fails_is_reported_not_raised(tmp_path, monkeypatch):
    monkeypatch.setattr(backends, "installed", lambda name: name == "tensorflow")
    results = backends.compare_backends(tmp_path / "no-arrays", epochs=2, repeats=1)
    assert results["jax"] == results["torch"] == {"status": "not installed"}
    assert results["tensorflow"]["status"] == "failed" and "No such file" in results["tensorflow"]["error"]


def test_study_table_ends_with_the_machine_readable_line():
    from melanoma_lab.bench import study as bench_study
    stage = {"stage": "m1", "seconds": 90.0, "epochs": 20, "final_val_accuracy": 0.5, "peak_rss_mb": 2000.0}
    results = {"seed": {"wall_s": 700.0, "peak_rss_mb": 4000.0, "stages": [stage]},
               "melanoma_lab": {"wall_s": 300.0, "peak_rss_mb": 3000.0,
                                "stages": [stage | {"val_balanced_accuracy": 0.4, "tracking_seconds": 1.0}]},
               "study_wall_ratio": 300 / 700, "peak_rss_ratio": 0.75}
    table = bench_study.format_table(results)
    assert table.splitlines()[-1] == "study_wall_ratio=0.43 peak_rss_ratio=0.75"
    assert "0.400" in table  # the lab stage's balanced accuracy


def test_timed_process_reports_wall_time_and_peak_memory_and_fails_loudly():
    import subprocess
    import sys

    import pytest

    from melanoma_lab.bench.study import _timed_process

    wall, peak_mb = _timed_process([sys.executable, "-c", "import time; b = bytearray(300 * 2**20); time.sleep(0.2)"])
    assert wall >= 0.2 and peak_mb >= 300
    with pytest.raises(subprocess.CalledProcessError):
        _timed_process([sys.executable, "-c", "raise SystemExit(3)"])


@pytest.mark.slow
def test_the_model_rows_time_a_recipe_as_its_runs_build_it(shared_cache, capsys):
    from melanoma_lab.bench import models

    row = models.measure(["experiment=m6", "dataset.image_size=64", f"paths.cache_dir={shared_cache}"], 16, 1)
    assert row["precision"] == "float32" and row["tta"] == "dihedral" and row["tta_views"] == 8
    assert 0 < row["trainable_weights"] < 4_000_000  # the top 11 blocks and the head, not the whole Lite0
    assert row["train_images_per_s"] > 0 and row["predict_images_per_s"] > 0 < row["predict_tta_images_per_s"]
    table = models.format_table({"m6": row})
    assert "| m6 | 64 | float32 |" in table and "(dihedral, 8 views)" in table
    with pytest.raises(SystemExit):
        models.main(["--rows", "m7"])
    assert "--rows takes m5, m6" in capsys.readouterr().err
