"""`melanoma-lab evaluate model_uri=URI dataset=NAME [key=value ...]`: score a model on any dataset, in its own run."""

from __future__ import annotations

from melanoma_lab.cli.hydra_app import hydra_command
from melanoma_lab.study.external import run_evaluation

app = hydra_command(run_evaluation, config_name="evaluate")
