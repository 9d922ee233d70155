"""The training runtime of the running Keras backend (``keras.backend.backend()``): precision, seeding and
determinism, and distribution (``trainer.strategy``). Each backend's implementation lives in its own module,
chosen from :data:`IMPLEMENTATIONS`; only that module imports its framework."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import keras
import numpy as np
from hydra.utils import get_class

from melanoma_lab.runtime.base import STRATEGIES, Accelerator, BackendRuntime, Processes, Scored

__all__ = ["STRATEGIES", "Accelerator", "BackendRuntime", "Processes", "PACKAGES", "auto_policy", "cpu_has_bfloat16", "gradient", "runtime",
           "seed_everything", "set_precision"]

# The package(s) of each backend: tracked in every run's tags and pinned in a served model's environment.
PACKAGES = {"tensorflow": ("tensorflow-cpu", "tensorflow"), "jax": ("jax", "jaxlib"), "torch": ("torch",)}
IMPLEMENTATIONS = {
    "tensorflow": "melanoma_lab.runtime.tensorflow_runtime.TensorFlowRuntime",
    "jax": "melanoma_lab.runtime.jax_runtime.JaxRuntime",
    "torch": "melanoma_lab.runtime.torch_runtime.TorchRuntime",
}


def runtime(backend: str | None = None) -> BackendRuntime:
    """The runtime of ``backend`` (default: the one Keras runs on); one instance per backend and process."""
    return _runtime(backend or keras.backend.backend())


@functools.cache
def _runtime(backend: str) -> BackendRuntime:
    return get_class(IMPLEMENTATIONS[backend])() if backend in IMPLEMENTATIONS else BackendRuntime()


def gradient(function: Scored, x: np.ndarray) -> tuple[np.ndarray, Any]:
    """d score / d x at ``x`` (as float32 numpy) and what ``function`` kept, on the running backend
    (``function(x) -> (score, kept)`` written in ``keras.ops`` or Keras layers)."""
    result, kept = runtime().gradient(function, x)
    return np.asarray(keras.ops.convert_to_numpy(result), np.float32), kept


def cpu_has_bfloat16() -> bool:
    """Whether this (Linux) CPU has native bfloat16 instructions (AVX-512 BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def auto_policy(accelerators: list[Accelerator], cpu_bfloat16: bool) -> str:
    """The dtype policy of ``trainer.precision=auto`` on these devices.

    GPU: bfloat16 keeps float32's exponent range, so it needs no loss scaling and cannot overflow where float16
    does; NVIDIA GPUs compute it natively from Ampere on (compute capability 8.0: A100, RTX 30xx, H100), so those
    get mixed_bfloat16. Older GPUs (Volta, Turing) have float16 tensor cores only and emulate bfloat16 slowly:
    mixed_float16 (Keras scales the loss). A GPU whose capability is unknown gets mixed_float16 too.
    CPU: mixed_bfloat16 where the CPU has bfloat16 instructions (faster here, see STACK-NOTES), else float32.
    """
    if accelerators:
        capability = accelerators[0].compute_capability
        return "mixed_bfloat16" if capability is not None and tuple(capability) >= (8, 0) else "mixed_float16"
    return "mixed_bfloat16" if cpu_bfloat16 else "float32"


def set_precision(precision: str) -> str:
    """Set Keras' global dtype policy (``auto``: :func:`auto_policy` on this backend's devices); returns it."""
    policy = auto_policy(runtime().accelerators(), cpu_has_bfloat16()) if precision == "auto" else precision
    keras.mixed_precision.set_global_policy(policy)
    return policy


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy, TensorFlow (tf.data), the backend and Keras' generators; ``deterministic``: also
    the backend's deterministic ops (slower)."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        runtime().make_deterministic()
