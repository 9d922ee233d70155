"""The JAX backend: GPUs from ``jax.local_devices()``, Keras' distribution API, ``jax.distributed`` for
``multi_worker``.

``multi_worker`` reads Keras' own variables (``keras.distribution.initialize``), set in every process:
``KERAS_DISTRIBUTION_JOB_ADDRESSES`` (``host:port`` of process 0, the coordinator), ``KERAS_DISTRIBUTION_NUM_PROCESSES``
and ``KERAS_DISTRIBUTION_PROCESS_ID`` (0 .. N-1). Every process feeds the same global batches (same seed, same
shuffle); Keras' ``DataParallel`` (``auto_shard_dataset``) splits each into per-process slices of
``batch_size / N`` (``tf.data.Dataset.rebatch`` + ``shard`` by process id), and gradients are averaged across all
global devices (on CPU through gloo collectives).
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, ContextManager, Iterator

import jax
import keras
import numpy as np

from melanoma_lab.errors import ConfigError
from melanoma_lab.runtime.base import STRATEGIES, Accelerator, BackendRuntime, Processes, Scored

log = logging.getLogger(__name__)
ENVIRONMENT = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES", "KERAS_DISTRIBUTION_PROCESS_ID")
DETERMINISTIC_GPU_FLAG = "--xla_gpu_deterministic_ops=true"


def _capability(device: Any) -> tuple[int, int] | None:
    text = getattr(device, "compute_capability", None)  # "8.0" on CUDA devices
    return tuple(int(part) for part in text.split(".")[:2]) if text else None


class JaxRuntime(BackendRuntime):
    backend = "jax"

    def gradient(self, function: Scored, x: np.ndarray) -> tuple[Any, Any]:
        return jax.grad(function, has_aux=True)(jax.numpy.asarray(x))

    def __init__(self) -> None:
        self._twins: dict[int, keras.Model] = {}

    def accelerators(self) -> list[Accelerator]:
        return [Accelerator(device.device_kind, _capability(device)) for device in jax.local_devices()
                if device.platform == "gpu"]

    def make_deterministic(self) -> None:
        """JAX on CPU is deterministic already; on a GPU XLA needs ``--xla_gpu_deterministic_ops``, read
        from ``XLA_FLAGS`` when the GPU backend starts (so before the first JAX computation of the process)."""
        flags = os.environ.get("XLA_FLAGS", "")
        if DETERMINISTIC_GPU_FLAG not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} {DETERMINISTIC_GPU_FLAG}".strip()

    def join(self, strategy: str) -> Processes:
        if strategy == "multi_worker" and not jax.distributed.is_initialized():
            missing = [name for name in ENVIRONMENT if not os.environ.get(name)]
            if missing:
                raise ConfigError(f"trainer.strategy=multi_worker on the JAX backend needs {', '.join(missing)} in the "
                                  "environment of every process (coordinator host:port, number of processes, this "
                                  "process's id 0..N-1; docs/backends.md: Several devices)")
            jax.config.update("jax_cpu_collectives_implementation", "gloo")  # cross-process collectives on CPU
            keras.distribution.initialize()
            log.info("process %d of %d joined %s: %d global device(s), %d local", jax.process_index(),
                     jax.process_count(), os.environ[ENVIRONMENT[0]], jax.device_count(), jax.local_device_count())
        return Processes(jax.process_index(), jax.process_count())

    def scope(self, strategy: str) -> ContextManager[Any]:
        """``default``: no distribution; ``mirrored`` and ``multi_worker``: ``DataParallel`` over every device,
        local ones (one process) or global ones (after :meth:`join`). Set globally: ``fit`` reads it too."""
        if strategy not in STRATEGIES:
            return super().scope(strategy)
        keras.distribution.set_distribution(
            None if strategy == "default" else keras.distribution.DataParallel(
                devices=keras.distribution.list_devices(), auto_shard_dataset=jax.process_count() == 1))
        return contextlib.nullcontext()

    def training_batches(self, dataset: Any, batch_size: int) -> Any:
        """Across processes each feeds its own slice of every global batch (Keras assembles the global batch from
        the processes' slices: ``auto_shard_dataset=False``), and every step must see a full global batch (a
        shorter last one would give the processes different step counts, and they would wait for each other
        forever). Without TensorFlow the batches are :class:`melanoma_lab.data.batches.ArrayBatches`."""
        count = jax.process_count()
        if count == 1:
            return dataset
        if batch_size % count:
            raise ConfigError(f"dataset.batch_size={batch_size} must be a multiple of the {count} processes of "
                              "trainer.strategy=multi_worker (each takes an equal slice of every batch)")
        return dataset.shard(jax.process_index(), count)

    def _twin(self, model: keras.Model) -> keras.Model:
        """A copy of ``model`` on this process's devices (built once, without the distribution), with its
        current weights: across processes the weights are global arrays no process can predict with alone."""
        twin = self._twins.get(id(model))
        if twin is None:
            with _undistributed():
                twin = self._twins[id(model)] = keras.models.clone_model(model)
        twin.set_weights(model.get_weights())
        return twin

    @contextlib.contextmanager
    def local_prediction(self, model: keras.Model) -> Iterator[keras.Model]:
        if jax.process_count() == 1:
            yield model
            return
        twin = self._twin(model)
        with _undistributed():
            yield twin

    def local_model(self, model: keras.Model) -> keras.Model:
        """After training: the local copy, and the distribution unset (evaluation predicts in each process)."""
        if jax.process_count() == 1:
            return model
        twin = self._twin(model)
        del self._twins[id(model)]
        keras.distribution.set_distribution(None)
        return twin


@contextlib.contextmanager
def _undistributed() -> Iterator[None]:
    current = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(current)
