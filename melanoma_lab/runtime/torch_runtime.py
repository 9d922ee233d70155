"""The torch backend: CUDA GPUs and deterministic algorithms (one device: Keras' distribution API is JAX's)."""

from __future__ import annotations

import os

import torch

from melanoma_lab.runtime.base import Accelerator, BackendRuntime


class TorchRuntime(BackendRuntime):
    backend = "torch"

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
