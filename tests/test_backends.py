"""Every experiment, ``predict`` (with Grad-CAM) and the served model on the jax and torch Keras backends, each in a
process where TensorFlow is hidden: anything that imports it fails the run. A backend whose package is not installed
is skipped."""

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from melanoma_lab.serving.classifier import served_requirements
from melanoma_lab.tracking.provenance import cpu_model, package_versions
from melanoma_lab.tracking.store import tracking_uri
from tests.conftest import TINY, TINY_AUGMENTOR, TINY_DATA, not_installed

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ["jax", "torch"]
# python -c WITHOUT_TENSORFLOW <module> [args] runs <module> as __main__; python -c WITHOUT_TENSORFLOW -c <code> runs
# <code>. TensorFlow is invisible to both the import system and importlib.util.find_spec (Keras and torch probe it).
WITHOUT_TENSORFLOW = """
import runpy, sys
from importlib.machinery import PathFinder

class HideTensorFlow(PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        return None if name.partition(".")[0] == "tensorflow" else super().find_spec(name, path, target)

sys.meta_path[:] = [HideTensorFlow if finder is PathFinder else finder for finder in sys.meta_path]
target = sys.argv.pop(1)
if target == "-c":
    exec(sys.argv.pop(1))
else:
    runpy.run_module(target, run_name="__main__", alter_sys=True)
"""


def without_tensorflow(backend: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW, *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=900)


def test_the_hidden_tensorflow_cannot_be_imported(tmp_path):
    result = without_tensorflow("jax", "-c", "import importlib.util; assert importlib.util.find_spec('tensorflow') "
                                "is None; import tensorflow", cwd=tmp_path)
    assert result.returncode == 1 and "ModuleNotFoundError: No module named 'tensorflow'" in result.stderr


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_a_served_model_pins_the_package_of_its_backend(backend):
    if backend != "tensorflow":
        pytest.importorskip(backend, reason=not_installed(backend))
    installed = package_versions()
    requirements = served_requirements(backend)
    pinned = {line.split("==")[0] for line in requirements}
    assert {"keras", "mlflow", "numpy"} <= pinned
    own = {"tensorflow": {"tensorflow-cpu", "tensorflow"}, "jax": {"jax", "jaxlib"}, "torch": {"torch"}}[backend]
    assert pinned & own == own & set(installed) and own & set(installed)
    assert not pinned & ({"tensorflow-cpu", "tensorflow", "jax", "jaxlib", "torch"} - own)
    assert all("+" not in line for line in requirements)  # no local version label (+cpu): PyPI could not serve it


@pytest.fixture(scope="module", params=BACKENDS)
def trained(request, tmp_path_factory):
    """m1, m2, m4 and m5 in one sweep, m3 and m6 (a head-only epoch, then fine-tuning) on their own, trained on
    ``backend`` without TensorFlow: (backend, project root, the finished runs by name)."""
    backend = request.param
    pytest.importorskip(backend, reason=not_installed(backend))
    root = tmp_path_factory.mktemp(backend)
    project = [*TINY, f"paths.root_dir={root}"]
    for args in (["--multirun", "experiment=m1,m2,m4,m5", *project], ["experiment=m3", *project, *TINY_AUGMENTOR],
                 ["experiment=m6", *TINY_DATA, "trainer=smoke", "trainer.epochs=2", "trainer.head_epochs=1",
                  f"paths.root_dir={root}"]):
        result = without_tensorflow(backend, "melanoma_lab", *args, cwd=root)
        assert result.returncode == 0, result.stderr[-4000:]
    client = mlflow.tracking.MlflowClient(tracking_uri(None, root / "mlruns"))
    runs = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id],
                              "attributes.status = 'FINISHED'")
    return backend, root, {run.info.run_name: run for run in runs}


@pytest.mark.backends
def test_every_experiment_trains_on_the_backend_without_tensorflow(trained):
    backend, root, runs = trained
    assert {"m1", "m2", "m3", "m4", "m5", "m6"} <= set(runs)
    assert runs["m6"].data.params["trainer.head_epochs"] == "1" and "model_weights_sha256" in runs["m6"].data.tags
    for name in ("m1", "m2", "m3", "m4", "m5", "m6"):
        assert runs[name].data.tags["runtime.keras_backend"] == backend, name
        assert f"version.{backend}" in runs[name].data.tags
        assert runs[name].data.tags["runtime.device"] == cpu_model()  # the backend sees no GPU on this machine


@pytest.mark.backends
def test_predict_with_grad_cam_and_the_served_model_run_on_the_backend(trained):
    backend, root, runs = trained
    uri, store = f"runs:/{runs['m5'].info.run_id}/model", tracking_uri(None, root / "mlruns")
    images = sorted((root / "data" / "cache" / "synthetic").rglob("Test/*/*.jpg"))[:1]
    assert images, "the synthetic Test images were not found"
    result = without_tensorflow(backend, "melanoma_lab.cli.predict", str(images[0]), "--model", uri, "--out",
                                str(root / "predicted"), "--tracking-uri", store, cwd=root)
    assert result.returncode == 0, result.stderr[-4000:]
    assert len(list((root / "predicted").glob("*_gradcam.png"))) == 1
    served = without_tensorflow(backend, "-c", f"""
import keras, mlflow, pandas as pd
from melanoma_lab.serving.classifier import encode_image
mlflow.set_tracking_uri({store!r})
model = mlflow.pyfunc.load_model({uri!r})
assert model.metadata.metadata["keras_backend"] == keras.backend.backend() == {backend!r}
table = model.predict(pd.DataFrame({{"image": [encode_image({str(images[0])!r})]}}))
assert table["error"].tolist() == [""] and abs(table.iloc[0, :9].sum() - 1) < 1e-4, table
""", cwd=root)
    assert served.returncode == 0, served.stderr[-4000:]


@pytest.mark.backends
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_model_trained_with_ema_weights_still_predicts_after_fit(backend, tmp_path):
    """Keras 3.15's own SwapEMAWeights leaves JAX models whose next predict fails ("Array has been deleted")."""
    pytest.importorskip(backend, reason=not_installed(backend))
    result = without_tensorflow(backend, "-c", """
import keras, numpy as np
from melanoma_lab.training.ema import SwapEMAWeights
x, y = np.random.rand(32, 8, 8, 3).astype("float32"), np.eye(3)[np.arange(32) % 3]
model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3), keras.layers.Flatten(),
                          keras.layers.Dense(3, activation="softmax")])
model.compile(optimizer=keras.optimizers.Adam(use_ema=True), loss="categorical_crossentropy")
validate = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: model.predict(x, verbose=0))  # as ours
model.fit(x, y, batch_size=8, epochs=1, callbacks=[SwapEMAWeights(swap_on_epoch=True), validate], verbose=0)
average = [keras.ops.convert_to_numpy(v) for v in model.optimizer._model_variables_moving_average]
assert all(np.array_equal(a, keras.ops.convert_to_numpy(v)) for a, v in zip(average, model.trainable_variables))
for _ in range(2):
    assert np.isfinite(model.predict(x, verbose=0)).all()
""", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.backends
def test_a_kerastuner_search_runs_on_jax_without_tensorflow(tmp_path):
    pytest.importorskip("jax", reason=not_installed("jax"))
    space = "tuner.search_space=[{key: model.dropout, type: float, min: 0.0, max: 0.5, step: 0.1}]"
    result = without_tensorflow("jax", "melanoma_lab", "experiment=m2", *TINY, f"paths.root_dir={tmp_path}",
                                "tuner=random", "tuner.max_trials=2", space, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / "conf" / "experiment" / "tuned" / "m2_random.yaml").is_file()
    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], "attributes.status = 'FINISHED'")
    trials = [r for r in runs if r.data.tags.get("kind") == "tuner_trial"]
    assert len(trials) == 2 and {r.data.tags.get("runtime.keras_backend") for r in trials} == {"jax"}
