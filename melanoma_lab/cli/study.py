"""`melanoma-lab study [key=value ...]`: every experiment for every seed, then the study report."""

from __future__ import annotations

from melanoma_lab.cli.hydra_app import hydra_command
from melanoma_lab.study.runner import run_study

app = hydra_command(run_study)
