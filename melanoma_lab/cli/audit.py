"""`melanoma-lab audit [key=value ...]`: what is wrong with a dataset before anything trains on it."""

from __future__ import annotations

from omegaconf import DictConfig

from melanoma_lab.cli.hydra_app import hydra_command


def audit(dataset: DictConfig, audit: DictConfig) -> None:
    """Audit ``dataset``: write the report to ``audit.out`` (default: Hydra's output folder) and print its summary."""
    from hydra.core.hydra_config import HydraConfig

    from melanoma_lab.data.audit import audit_catalog, summary, write_report
    from melanoma_lab.data.sources import load_catalog

    report = audit_catalog(load_catalog(dataset), audit.near_duplicate_distance)
    path = write_report(report, audit.out or HydraConfig.get().runtime.output_dir)
    print(summary(report))
    print(f"audit written to {path}")


app = hydra_command(audit, nodes=("dataset", "audit"))
