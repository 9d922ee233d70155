"""Command line: ``python -m melanoma_lab experiment=m2 [key=value ...]``."""

from __future__ import annotations

import signal

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from melanoma_lab.config import register_configs
from melanoma_lab.sweep import parent_run_id

register_configs()


def _interrupt_on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt(f"received signal {signum}")


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def app(cfg: DictConfig) -> float | None:
    """Train one experiment (cross-validate it, or search its hyperparameters with ``tuner=...``); the return
    value is the objective for sweepers."""
    from melanoma_lab.crossval import run_cross_validation
    from melanoma_lab.experiment import KEY_METRICS, run_experiment
    from melanoma_lab.tuning import run_search

    runtime = HydraConfig.get()
    if cfg.tuner is not None:
        run = run_search
    else:
        run = run_cross_validation if cfg.study.cv_folds > 1 else run_experiment
    results = run(cfg, runtime.runtime.output_dir, list(runtime.overrides.task), parent_run_id=parent_run_id())
    prefix = "cv_mean_" if cfg.study.cv_folds > 1 else ""
    keys = [k if k.startswith("test_") else prefix + k for k in KEY_METRICS]
    print(f"[{cfg.name}] " + "  ".join(f"{k}={results[k]:.4f}" for k in keys if k in results))
    return results.get(prefix + "val_balanced_accuracy")


def main() -> None:
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)  # SIGTERM ends the run as KILLED, like Ctrl-C
    app()


if __name__ == "__main__":
    main()
