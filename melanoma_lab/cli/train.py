"""Command line: ``python -m melanoma_lab experiment=m2 [key=value ...]``.

A user error (:class:`melanoma_lab.errors.UserError`: a config value out of range, a missing dataset, an
unreachable tracking store) ends a single run with its message on stderr, no traceback, and exit status 2;
config values are checked before TensorFlow loads. So does an error of Hydra's composition (a misspelt option, key
or group, an override it cannot parse): one ``error:`` line with the nearest names (:mod:`melanoma_lab.cli.hydra_app`).
In a ``--multirun`` sweep the job fails and the sweep goes on (see :mod:`melanoma_lab.study.sweep`).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from omegaconf import DictConfig

from melanoma_lab.cli.hydra_app import hydra_command, run_hydra_app
from melanoma_lab.config.schema import register_configs
from melanoma_lab.study.sweep import parent_run_id

register_configs()


def _interrupt_on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt(f"received signal {signum}")


def train(cfg: DictConfig, output_dir: Path, overrides: list[str]) -> float | None:
    """Train one experiment (cross-validate it, or search its hyperparameters with ``tuner=...``); the return
    value is the objective for sweepers."""
    from melanoma_lab.study.crossval import run_cross_validation
    from melanoma_lab.study.ensemble import check_ensemble
    from melanoma_lab.study.experiment import run_experiment
    from melanoma_lab.study.objective import sweep_objective
    from melanoma_lab.study.tuning import run_search

    check_ensemble(cfg.study, cfg.tracking)  # study.ensemble=true without cross-validation would be silently ignored
    if cfg.tuner is not None:
        run = run_search
    else:
        run = run_cross_validation if cfg.study.cv_folds > 1 else run_experiment
    results = run(cfg, output_dir, overrides, parent_run_id=parent_run_id())
    print(f"[{cfg.name}] " + summary_line(results, cross_validated=cfg.study.cv_folds > 1))
    # the sweepers' objective: (inner) validation by default, never silently the outer folds (study/objective.py)
    return sweep_objective(results, cfg.study.sweep_objective, cross_validated=cfg.study.cv_folds > 1)


app = hydra_command(train)


def summary_line(results: dict[str, float], cross_validated: bool) -> str:
    """The registry's summary keys found in ``results``: a cross-validation's mean over folds (``cv_mean_``) of
    each fold run's own validation and held-out fold numbers, then its parent's (out-of-fold, ensemble), each with
    its interval where one was computed (``[low, high]``)."""
    from melanoma_lab.evaluation import registry

    mean = ("final_val", "val", "fold") if cross_validated else ()
    keys = [f"cv_mean_{key}" if key.startswith(tuple(f"{p}_" for p in mean)) else key
            for key in registry.keys(registry.SUMMARY)]
    return "  ".join(f"{k}={results[k]:.4f}{registry.interval_text(results, k)}" for k in keys if k in results)


def main(argv: list[str] | None = None) -> None:
    """Train with ``argv`` (Hydra overrides; ``sys.argv[1:]`` when None)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # model loads mid-run (ensemble, shifts)
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)  # SIGTERM ends the run as KILLED, like Ctrl-C
    run_hydra_app(app, sys.argv[0], sys.argv[1:] if argv is None else list(argv))  # a Hydra error: one line, 2


if __name__ == "__main__":
    main()
