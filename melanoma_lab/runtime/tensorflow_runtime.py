"""The TensorFlow backend: GPUs from ``tf.config``, op determinism, ``tf.distribute`` strategies."""

from __future__ import annotations

import json
import logging
import os
from typing import Any, ContextManager

import keras
import numpy as np
import tensorflow as tf

from melanoma_lab.errors import ConfigError
from melanoma_lab.runtime.base import Accelerator, BackendRuntime, Processes, Scored

log = logging.getLogger(__name__)


class TensorFlowRuntime(BackendRuntime):
    backend = "tensorflow"

    def gradient(self, function: Scored, x: np.ndarray) -> tuple[Any, Any]:
        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            score, kept = function(x)
        return tape.gradient(score, x), kept

    def accelerators(self) -> list[Accelerator]:
        found = []
        for gpu in tf.config.list_physical_devices("GPU"):
            details = tf.config.experimental.get_device_details(gpu)
            found.append(Accelerator(details.get("device_name", gpu.name), details.get("compute_capability")))
        return found

    def make_deterministic(self) -> None:
        tf.config.experimental.enable_op_determinism()

    def join(self, strategy: str) -> Processes:
        """Under ``multi_worker`` this worker's place in ``TF_CONFIG`` (a chief, if any, is the primary)."""
        if strategy != "multi_worker":
            return Processes()
        config = tf_config()
        cluster, task = config.get("cluster", {}), config.get("task", {})
        members = [(kind, i) for kind in ("chief", "worker") for i in range(len(cluster.get(kind, [])))]
        place = (task.get("type", "worker"), int(task.get("index", 0)))
        return Processes(members.index(place) if place in members else 0, max(len(members), 1))

    def scope(self, strategy: str) -> ContextManager[Any]:
        """``default`` (one device), ``mirrored`` (every local GPU, or the CPU) or ``multi_worker`` (the
        machines of ``TF_CONFIG``)."""
        if strategy == "mirrored":
            return tf.distribute.MirroredStrategy().scope()
        if strategy == "multi_worker":
            tf_config()
            log.warning("Keras %s cannot fit() under MultiWorkerMirroredStrategy yet (PerReplica error, "
                        "keras-team/keras#20585); the strategy is built, training is expected to fail; "
                        "KERAS_BACKEND=jax trains multi_worker", keras.__version__)
            return tf.distribute.MultiWorkerMirroredStrategy().scope()
        return tf.distribute.get_strategy().scope()

    def model_scope(self, model: keras.Model) -> ContextManager[Any]:
        return model.distribute_strategy.scope()  # a new MirroredStrategy would not take the model's variables


def tf_config() -> dict:
    """``TF_CONFIG`` (cluster and task of this worker), which ``multi_worker`` needs on the TensorFlow backend."""
    if not os.environ.get("TF_CONFIG"):
        raise ConfigError("trainer.strategy=multi_worker needs TF_CONFIG (cluster and task of this worker) in "
                          "the environment of every worker; on one machine use trainer.strategy=mirrored")
    return json.loads(os.environ["TF_CONFIG"])
