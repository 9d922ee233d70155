import keras
import numpy as np
import pytest
from hydra.utils import instantiate

from melanoma_lab.serving import predict  # grad_cam as predict --out uses it (melanoma_lab/gradcam.py)
from tests.conftest import compose_config


@pytest.mark.parametrize("frozen", [False, True])
def test_grad_cam_finds_the_last_convolution_inside_a_nested_backbone(frozen):
    cfg = compose_config(["model=transfer", "model.weights=null"])
    model = instantiate(cfg.model, input_shape=(64, 64, 3), num_classes=9, _convert_="all")
    if frozen:  # as with pretrained weights: the backbone's variables are not trainable
        [layer for layer in model.layers if isinstance(layer, keras.Model)][0].trainable = False
    image = np.random.default_rng(0).uniform(0, 255, (64, 64, 3)).astype(np.float32)
    heatmap = predict.grad_cam(model, image, 3)
    assert heatmap.shape == (64, 64) and np.isfinite(heatmap).all()
    assert 0 <= heatmap.min() and heatmap.max() <= 1
