"""The per-backend runtime (melanoma_lab.runtime): precision by device, seeding and determinism, and distribution
— DataParallel on JAX in one process, and multi_worker across two JAX processes on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from melanoma_lab.errors import ConfigError
from melanoma_lab.runtime import Accelerator, BackendRuntime, Processes, auto_policy, runtime, set_precision
from melanoma_lab.tracking.provenance import device_name
from melanoma_lab.study.tune_cluster import free_port
from tests.conftest import TINY, not_installed

ROOT = Path(__file__).resolve().parents[1]
needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason=not_installed("jax"))
V100, A100 = Accelerator("Tesla V100-SXM2-16GB", (7, 0)), Accelerator("NVIDIA A100-SXM4-80GB", (8, 0))


def backend_python(backend: str, code: str, timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter on Keras backend ``backend`` (the backend is fixed per process)."""
    environment = os.environ | {"KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"} | env
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True,
                          timeout=timeout)


def last_json(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("accelerators", "cpu_bf16", "policy"), [
    ([V100], True, "mixed_float16"),      # pre-Ampere GPU: float16 tensor cores
    ([A100, V100], False, "mixed_bfloat16"),  # Ampere and later: native bfloat16 (the first GPU decides)
    ([Accelerator("some GPU")], False, "mixed_float16"),  # capability unknown: the safe float16
    ([], True, "mixed_bfloat16"),         # CPU with bfloat16 instructions
    ([], False, "float32"),
])
def test_auto_precision_picks_the_policy_by_device(accelerators, cpu_bf16, policy):
    assert auto_policy(accelerators, cpu_bf16) == policy


def test_auto_precision_sets_the_policy_of_the_backends_gpus(monkeypatch):
    tensorflow_runtime = runtime("tensorflow")
    try:
        for gpus, expected in (([V100], "mixed_float16"), ([A100, A100], "mixed_bfloat16")):
            monkeypatch.setattr(type(tensorflow_runtime), "accelerators", lambda self, gpus=gpus: gpus)
            assert set_precision("auto") == expected == keras.mixed_precision.global_policy().name
        assert device_name() == "2 x NVIDIA A100-SXM4-80GB"  # runtime.device
    finally:
        set_precision("float32")


def test_tensorflow_describes_its_gpus(monkeypatch):
    import tensorflow as tf

    gpu = tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [gpu] if kind == "GPU" else [])
    monkeypatch.setattr(tf.config.experimental, "get_device_details",
                        lambda device: {"device_name": "Tesla T4", "compute_capability": (7, 5)})
    assert runtime("tensorflow").accelerators() == [Accelerator("Tesla T4", (7, 5))]


@needs_jax
def test_jax_describes_its_gpus(monkeypatch):
    import jax

    from melanoma_lab.runtime.jax_runtime import JaxRuntime

    class FakeDevice:
        platform, device_kind, compute_capability = "gpu", "NVIDIA H100 80GB HBM3", "9.0"

    monkeypatch.setattr(jax, "local_devices", lambda: [FakeDevice()])
    assert JaxRuntime().accelerators() == [Accelerator("NVIDIA H100 80GB HBM3", (9, 0))]
    assert auto_policy(JaxRuntime().accelerators(), False) == "mixed_bfloat16"


def test_tensorflow_workers_know_their_place_from_tf_config(monkeypatch):
    cluster = {"chief": ["h0:1"], "worker": ["h1:1", "h2:1"]}
    for task, place in (({"type": "chief", "index": 0}, Processes(0, 3)),
                        ({"type": "worker", "index": 1}, Processes(2, 3))):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
        assert runtime("tensorflow").join("multi_worker") == place
    assert not Processes(2, 3).primary and Processes(0, 3).primary
    assert runtime("tensorflow").join("default") == Processes()


@needs_jax
def test_jax_multi_worker_needs_the_keras_distribution_variables(monkeypatch):
    from melanoma_lab.runtime.jax_runtime import ENVIRONMENT, JaxRuntime

    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="KERAS_DISTRIBUTION_JOB_ADDRESSES, KERAS_DISTRIBUTION_NUM_PROCESSES"):
        JaxRuntime().join("multi_worker")


@needs_jax
def test_jax_processes_feed_only_full_batches_they_can_split(monkeypatch):
    import jax
    import pandas as pd

    from melanoma_lab.data.batches import ArrayBatches
    from melanoma_lab.data.pipeline import DecodedImages
    from melanoma_lab.runtime.jax_runtime import JaxRuntime

    images = np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    decoded = DecodedImages(images, np.zeros(10, np.int32), pd.DataFrame(), {})

    def batches():
        return ArrayBatches(decoded, 2, 4, training=False, seed=0)  # 4, 4, 2 images

    one = batches()
    assert JaxRuntime().training_batches(one, 4) is one and len(one) == 3  # one process: everything
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    for index in range(2):
        monkeypatch.setattr(jax, "process_index", lambda index=index: index)
        mine = JaxRuntime().training_batches(batches(), 4)
        assert len(mine) == 2  # no short step in one process
        assert [list(mine[step][0][:, 0, 0, 0]) for step in range(2)] == [
            [4 * step + 2 * index, 4 * step + 2 * index + 1] for step in range(2)]  # its half of each batch
    monkeypatch.setattr(jax, "process_count", lambda: 3)
    with pytest.raises(ConfigError, match="dataset.batch_size=4 must be a multiple of the 3 processes"):
        JaxRuntime().training_batches(batches(), 4)


def test_a_backend_without_distribution_refuses_a_strategy():
    with pytest.raises(ConfigError, match="trainer.strategy=mirrored is not available on the none backend"):
        BackendRuntime().scope("mirrored")


SEEDED_FITS = """
import json, keras, numpy as np
from melanoma_lab.runtime import seed_everything

def fit(seed):
    seed_everything(seed, deterministic=True)
    x = np.random.normal(size=(64, 8)).astype("float32")
    y = np.eye(4, dtype="float32")[np.random.randint(0, 4, 64)]
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dropout(0.3), keras.layers.Dense(4, activation="softmax")])
    model.compile(keras.optimizers.SGD(0.1), "categorical_crossentropy")
    model.fit(x, y, batch_size=8, epochs=2, shuffle=True, verbose=0)
    return model.get_weights()

def same(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a, b))

first, again, other = fit(7), fit(7), fit(8)
print(json.dumps({"backend": keras.backend.backend(), "same_seed": same(first, again), "other_seed": same(first, other)}))
"""


@pytest.mark.parametrize("backend", ["jax", "torch", "tensorflow"])
@pytest.mark.slow
def test_seeding_makes_two_fits_identical(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(not_installed(backend))
    result = last_json(backend_python(backend, SEEDED_FITS))
    assert result == {"backend": backend, "same_seed": True, "other_seed": False}


DETERMINISM = {  # an expression: whether the backend's deterministic ops are on
    "jax": "'--xla_gpu_deterministic_ops=true' in os.environ.get('XLA_FLAGS', '')",
    "torch": "__import__('torch').are_deterministic_algorithms_enabled()",
    "tensorflow": "__import__('importlib').import_module('tensorflow.python.framework.config').is_op_determinism_enabled()",
}


@pytest.mark.parametrize("backend", list(DETERMINISM))
@pytest.mark.slow
def test_deterministic_turns_on_the_backends_deterministic_ops(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(not_installed(backend))
    state = DETERMINISM[backend]
    code = ("import json, os; from melanoma_lab.runtime import seed_everything; seed_everything(1, False); "
            f"before = {state}; seed_everything(1, True); print(json.dumps([before, {state}]))")
    assert last_json(backend_python(backend, code)) == [False, True]


MIRRORED_ON_JAX = """
import json, sys, keras
from tests.conftest import compose_config, training_recipe
from melanoma_lab.study.experiment import run_experiment
from melanoma_lab.training.fit import compile_model

cfg = compose_config(sys.argv[1:])
compile_model(training_recipe(cfg), 9, steps=2)
mesh = keras.distribution.distribution().device_mesh
metrics = run_experiment(cfg, cfg.paths.root_dir + "/run")
print(json.dumps({"distribution": type(keras.distribution.distribution()).__name__, "devices": mesh.devices.tolist(),
                  "bacc": metrics["val_balanced_accuracy"]}))
"""


@needs_jax
@pytest.mark.distribution
def test_mirrored_on_jax_trains_data_parallel_over_the_local_devices(tmp_path):
    overrides = [*TINY, "trainer.strategy=mirrored", "tracking.log_model=false", f"paths.root_dir={tmp_path}"]
    result = subprocess.run([sys.executable, "-c", MIRRORED_ON_JAX, *overrides], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, env=os.environ | {"KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)})
    found = last_json(result)
    assert found["distribution"] == "DataParallel" and found["devices"] == ["cpu:0"]
    assert 0.0 <= found["bacc"] <= 1.0


@needs_jax
@pytest.mark.slow
@pytest.mark.distribution
def test_multi_worker_trains_one_run_across_two_jax_processes(tmp_path):
    """Two processes on 127.0.0.1 train one model: both exit 0, process 0 alone logs one FINISHED run that
    counts 2 processes, and both end with the same weights."""
    import mlflow

    from melanoma_lab.tracking.store import tracking_uri

    shared = {"KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2",
              "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{free_port()}", "KERAS_DISTRIBUTION_NUM_PROCESSES": "2"}
    command = [sys.executable, "-m", "melanoma_lab", "experiment=m1", *TINY, "trainer.strategy=multi_worker",
               f"paths.root_dir={tmp_path}"]
    workers = [subprocess.Popen([*command, f"hydra.run.dir={tmp_path}/process{index}"], cwd=ROOT,
                                env=os.environ | shared | {"KERAS_DISTRIBUTION_PROCESS_ID": str(index)},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for index in range(2)]
    try:
        outputs = [worker.communicate(timeout=400)[0] for worker in workers]
    finally:
        for worker in workers:  # a process waiting for a lost peer ignores SIGTERM
            worker.kill()
    assert [worker.returncode for worker in workers] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    for index, output in enumerate(outputs):
        assert f"process {index} of 2 joined" in output and "2 global device(s), 1 local" in output

    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [(run.info.status, run.data.tags["runtime.processes"], run.data.tags["pid"]) for run in runs] == [
        ("FINISHED", "2", str(workers[0].pid))]
    weights = [keras.saving.load_model(tmp_path / f"process{i}" / "checkpoints" / "best.keras").get_weights()
               for i in range(2)]
    assert all(np.array_equal(a, b) for a, b in zip(*weights))


@pytest.mark.slow
def test_a_run_of_several_processes_always_trains(tiny_cfg, tmp_path, monkeypatch):
    """Only process 0 sees the store: reusing a FINISHED twin there would leave the other processes waiting."""
    import mlflow

    from melanoma_lab.study.experiment import run_experiment
    from melanoma_lab.tracking.store import tracking_uri

    cfg = tiny_cfg("tracking.log_model=false")
    run_experiment(cfg, tmp_path / "first")
    monkeypatch.setattr(type(runtime()), "join", lambda self, strategy: Processes(0, 2))
    run_experiment(cfg, tmp_path / "second")  # same config, data and code: reused if it ran alone
    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert sorted((run.data.tags["runtime.processes"], run.data.params["tracking.skip_finished"]) for run in runs) == [
        ("1", "True"), ("2", "False")]
