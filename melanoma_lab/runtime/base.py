"""What every backend's runtime offers, and the defaults a backend keeps when it has nothing of its own."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Iterator

import keras

from melanoma_lab.errors import ConfigError

STRATEGIES = ("default", "mirrored", "multi_worker")
Scored = Callable[[Any], tuple[Any, Any]]  # x -> (scalar score, anything else to keep), written in keras.ops


@dataclass(frozen=True)
class Accelerator:
    """One GPU as a backend describes it: its name and CUDA compute capability (None where unknown)."""

    name: str
    compute_capability: tuple[int, int] | None = None


@dataclass(frozen=True)
class Processes:
    """This process among those that train one model together (one process: index 0 of 1)."""

    index: int = 0
    count: int = 1

    @property
    def primary(self) -> bool:
        """Only the primary process logs to MLflow and writes the run's files; the others train silently."""
        return self.index == 0


class BackendRuntime:
    """Precision, determinism and distribution of one Keras backend. A backend overrides what it has."""

    backend = "none"

    def gradient(self, function: Scored, x: Any) -> tuple[Any, Any]:
        """d score / d x at ``x`` (a backend tensor) and what ``function`` kept, for ``function(x) -> (score, kept)``."""
        raise NotImplementedError(f"no gradient on the Keras backend {self.backend!r}: use tensorflow, jax or torch")

    def accelerators(self) -> list[Accelerator]:
        """The GPUs this backend trains on (none: the CPU)."""
        return []

    def make_deterministic(self) -> None:
        """Make this backend's ops deterministic (after ``keras.utils.set_random_seed``)."""

    def join(self, strategy: str) -> Processes:
        """Start or join the processes of ``strategy`` (multi_worker); this process's place among them."""
        return Processes()

    def scope(self, strategy: str) -> ContextManager[Any]:
        """The context in which the model is built and compiled under ``strategy``; ``default``: none."""
        if strategy != "default":
            raise ConfigError(f"trainer.strategy={strategy} is not available on the {self.backend} backend "
                              f"(KERAS_BACKEND={self.backend}); use trainer.strategy=default, or "
                              "KERAS_BACKEND=jax / tensorflow (docs/backends.md: Several devices)")
        return contextlib.nullcontext()

    def model_scope(self, model: keras.Model) -> ContextManager[Any]:
        """The context in which an already built ``model`` is compiled again (the strategy it was built under)."""
        return contextlib.nullcontext()

    def training_batches(self, dataset: Any, batch_size: int) -> Any:
        """The training batches as this process must feed them to ``fit`` (all of them in one process)."""
        return dataset

    @contextlib.contextmanager
    def local_prediction(self, model: keras.Model) -> Iterator[keras.Model]:
        """Within: a model with ``model``'s current weights that this process alone can predict with."""
        yield model

    def local_model(self, model: keras.Model) -> keras.Model:
        """After training: a model (with ``model``'s weights) for this process alone to evaluate and save."""
        return model
