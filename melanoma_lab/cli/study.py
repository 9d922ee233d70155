"""`melanoma-lab study [key=value ...]`: every experiment for every seed, then the study report."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from melanoma_lab.config.compose import CONF_PATH
from melanoma_lab.config.schema import register_configs
from melanoma_lab.study.runner import run_study


@hydra.main(version_base="1.3", config_path=CONF_PATH, config_name="config")
def main(cfg: DictConfig) -> None:
    runtime = HydraConfig.get()
    report = run_study(cfg, list(runtime.overrides.task), Path(runtime.runtime.output_dir))
    print(f"study report: {report} and {report.with_suffix('.html')}")


if __name__ == "__main__":
    register_configs()
    main()
