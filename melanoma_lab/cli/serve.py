"""`melanoma-lab serve [serving.model_uri=URI ...]`: serve a melanoma_lab model over REST (mlflow models serve)."""

from __future__ import annotations

import os
import sys

import mlflow
from omegaconf import DictConfig

from melanoma_lab.cli.hydra_app import hydra_command
from melanoma_lab.errors import UserError
from melanoma_lab.serving.serve import serve_command
from melanoma_lab.tracking.store import configured_tracking_uri


def serve(serving: DictConfig, tracking: DictConfig, paths: DictConfig) -> None:
    """Serve ``serving.model_uri`` from the configured store (this process becomes ``mlflow models serve``)."""
    uri = configured_tracking_uri(tracking, paths.mlruns_dir)
    mlflow.set_tracking_uri(uri)
    try:
        metadata = mlflow.models.get_model_info(serving.model_uri).metadata or {}
    except mlflow.exceptions.MlflowException as error:
        raise UserError(f"cannot serve {serving.model_uri}: {error}. Register a model first: melanoma-lab promote "
                        "--study NAME (or --run RUN_ID), or set serving.model_uri=runs:/<run_id>/model") from None
    if "classes" not in metadata:
        raise UserError(f"{serving.model_uri} was not logged by melanoma_lab (no class names in its metadata)")
    print(f"serving {serving.model_uri} ({len(metadata['classes'])} classes, input {metadata['image_size']} px) "
          f"on http://{serving.host}:{serving.port}/invocations", flush=True)
    # mlflow starts `uvicorn` by name: this interpreter's scripts folder (e.g. .venv/bin) goes first on PATH
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    os.execve(sys.executable, serve_command(serving), os.environ | {"MLFLOW_TRACKING_URI": uri, "PATH": path})


app = hydra_command(serve, nodes=("serving", "tracking", "paths"))
