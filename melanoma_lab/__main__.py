"""Command line: ``python -m melanoma_lab experiment=m2 [key=value ...]``."""

from __future__ import annotations

import signal
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from melanoma_lab.config import register_configs

register_configs()


def _interrupt_on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt(f"received signal {signum}")


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def app(cfg: DictConfig) -> float | None:
    from melanoma_lab.experiment import run_experiment

    runtime = HydraConfig.get()
    results = run_experiment(cfg, runtime.runtime.output_dir, list(runtime.overrides.task))
    print(f"[{cfg.name}] " + "  ".join(f"{k}={results[k]:.4f}" for k in
                                      ("final_val_accuracy", "val_balanced_accuracy", "val_melanoma_sensitivity",
                                       "test_balanced_accuracy") if k in results))
    return results.get("val_balanced_accuracy")


def main() -> None:
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    sys.exit(app())


if __name__ == "__main__":
    main()
