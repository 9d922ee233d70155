"""`melanoma-lab serve [serving.model_uri=URI ...]`: serve a melanoma_lab model over REST (mlflow models serve)."""

from __future__ import annotations

import os
import sys

import hydra
import mlflow
from omegaconf import DictConfig

from melanoma_lab.config.compose import CONF_PATH
from melanoma_lab.config.schema import register_configs, validate
from melanoma_lab.errors import USER_ERROR_STATUS
from melanoma_lab.serving.serve import serve_command
from melanoma_lab.tracking.store import configured_tracking_uri


@hydra.main(version_base="1.3", config_path=CONF_PATH, config_name="config")
def main(cfg: DictConfig) -> None:
    validate(cfg)
    uri = configured_tracking_uri(cfg.tracking, cfg.paths.mlruns_dir)
    mlflow.set_tracking_uri(uri)
    try:
        metadata = mlflow.models.get_model_info(cfg.serving.model_uri).metadata or {}
    except mlflow.exceptions.MlflowException as error:
        print(f"error: cannot serve {cfg.serving.model_uri}: {error}. Register a model first: melanoma-lab promote "
              "--study NAME (or --run RUN_ID), or set serving.model_uri=runs:/<run_id>/model", file=sys.stderr)
        raise SystemExit(USER_ERROR_STATUS) from None
    if "classes" not in metadata:
        print(f"error: {cfg.serving.model_uri} was not logged by melanoma_lab (no class names in its metadata)",
              file=sys.stderr)
        raise SystemExit(USER_ERROR_STATUS)
    print(f"serving {cfg.serving.model_uri} ({len(metadata['classes'])} classes, input {metadata['image_size']} px) "
          f"on http://{cfg.serving.host}:{cfg.serving.port}/invocations", flush=True)
    # mlflow starts `uvicorn` by name: this interpreter's scripts folder (e.g. .venv/bin) goes first on PATH
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    os.execve(sys.executable, serve_command(cfg.serving), os.environ | {"MLFLOW_TRACKING_URI": uri, "PATH": path})


if __name__ == "__main__":
    register_configs()
    main()
