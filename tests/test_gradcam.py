import keras
import numpy as np
import pytest
from hydra.utils import instantiate

from melanoma_lab.evaluation.gradcam import grad_cam  # as predict --out uses it
from tests.conftest import compose_config, not_installed


@pytest.mark.parametrize("frozen", [False, True])
def test_grad_cam_finds_the_last_convolution_inside_a_nested_backbone(frozen):
    cfg = compose_config(["model=transfer", "model.weights=null"])
    model = instantiate(cfg.model, input_shape=(64, 64, 3), num_classes=9, _convert_="all")
    if frozen:  # as with pretrained weights: the backbone's variables are not trainable
        [layer for layer in model.layers if isinstance(layer, keras.Model)][0].trainable = False
    image = np.random.default_rng(0).uniform(0, 255, (64, 64, 3)).astype(np.float32)
    heatmap = grad_cam(model, image, 3)
    assert heatmap.shape == (64, 64) and np.isfinite(heatmap).all()
    assert 0 <= heatmap.min() and heatmap.max() <= 1


@pytest.mark.backends
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_grad_cam_is_the_same_on_every_backend(backend, tmp_path):
    """The same saved models (a plain CNN, a residual one and a nested backbone) give the same heatmaps on the
    TensorFlow backend (this process) and on ``backend`` (a process without TensorFlow)."""
    from tests.test_backends import without_tensorflow

    pytest.importorskip(backend, reason=not_installed(backend))
    image = np.random.default_rng(0).uniform(0, 255, (64, 64, 3)).astype(np.float32)
    np.save(tmp_path / "image.npy", image)
    for name, overrides in {"cnn": ["experiment=m2"], "residual": ["experiment=m5"],
                            "transfer": ["model=transfer", "model.weights=null"]}.items():
        for seed in range(5):  # an untrained network's map can be all zero: take the first initialisation with one
            keras.utils.set_random_seed(seed)
            model = instantiate(compose_config(overrides).model, input_shape=(64, 64, 3), num_classes=9,
                                _convert_="all")
            heatmap = grad_cam(model, image, 3)
            if heatmap.max() > 0:
                break
        model.save(tmp_path / f"{name}.keras")
        np.save(tmp_path / f"{name}.npy", heatmap)
    result = without_tensorflow(backend, "-c", """
import keras, numpy as np
from melanoma_lab.evaluation.gradcam import grad_cam
image = np.load("image.npy")
for name in ("cnn", "residual", "transfer"):
    heatmap = grad_cam(keras.saving.load_model(name + ".keras"), image, 3)
    expected = np.load(name + ".npy")
    assert expected.max() > 0 and np.abs(heatmap - expected).max() < 1e-4, (name, np.abs(heatmap - expected).max())
""", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
