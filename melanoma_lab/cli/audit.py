"""`melanoma-lab audit [key=value ...]`: what is wrong with a dataset before anything trains on it."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from melanoma_lab.config.compose import CONF_PATH
from melanoma_lab.data.audit import audit_catalog, summary, write_report


@hydra.main(version_base="1.3", config_path=CONF_PATH, config_name="config")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from melanoma_lab.config.schema import validate
    from melanoma_lab.data.sources import load_catalog

    validate(cfg)
    report = audit_catalog(load_catalog(cfg.dataset), cfg.audit.near_duplicate_distance)
    out = cfg.audit.out or HydraConfig.get().runtime.output_dir
    path = write_report(report, out)
    print(summary(report))
    print(f"audit written to {path}")


if __name__ == "__main__":
    from melanoma_lab.config.schema import register_configs

    register_configs()
    main()
