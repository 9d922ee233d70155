"""The torch backend: CUDA GPUs and deterministic algorithms (one device: Keras' distribution API is JAX's)."""

from __future__ import annotations

import os
from typing import Any

import keras
import numpy as np
import torch

from melanoma_lab.runtime.base import Accelerator, BackendRuntime, Scored


class TorchRuntime(BackendRuntime):
    backend = "torch"

    def gradient(self, function: Scored, x: np.ndarray) -> tuple[Any, Any]:
        x = keras.ops.convert_to_tensor(x).detach().requires_grad_()  # on the device Keras computes on
        score, kept = function(x)
        (gradient,) = torch.autograd.grad(score, x)
        return gradient, kept

    def accelerators(self) -> list[Accelerator]:
        if not torch.cuda.is_available():
            return []
        return [Accelerator(torch.cuda.get_device_name(i), tuple(torch.cuda.get_device_capability(i)))
                for i in range(torch.cuda.device_count())]

    def make_deterministic(self) -> None:
        # cuBLAS is deterministic only with a fixed workspace (read when CUDA starts); torch raises on an op
        # that has no deterministic implementation instead of silently varying.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True)
