"""`melanoma-lab evaluate model_uri=URI dataset=NAME [key=value ...]`: score a model on any dataset, in its own run."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from melanoma_lab.config.compose import CONF_PATH
from melanoma_lab.config.schema import register_configs
from melanoma_lab.errors import USER_ERROR_STATUS, UserError
from melanoma_lab.evaluation import registry
from melanoma_lab.study.external import run_evaluation


@hydra.main(version_base="1.3", config_path=CONF_PATH, config_name="evaluate")
def app(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    try:
        metrics = run_evaluation(cfg, HydraConfig.get().runtime.output_dir)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(USER_ERROR_STATUS) from None
    shown = [f"eval_{name}" for name in registry.names(registry.SUMMARY)]
    keys = ["eval_images", "eval_unknown_class_images", *shown,
            *sorted(k for k in metrics if k.startswith("eval_shift_worst_drop_"))]
    print(f"[{cfg.name}] " + "  ".join(f"{k}={metrics[k]:.4g}" for k in keys if k in metrics))


if __name__ == "__main__":
    register_configs()
    app()
