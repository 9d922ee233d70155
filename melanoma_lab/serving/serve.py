"""Serve a melanoma_lab model over REST with ``mlflow models serve``: ``melanoma-lab serve``.

    melanoma-lab serve [serving.port=5001] [serving.model_uri=runs:/<run_id>/model]

Default: the registered champion (``melanoma-lab promote``) on 127.0.0.1:5001. Query it with
``POST /invocations`` and ``{"dataframe_records": [{"image": "<base64 of a JPEG/PNG file>"}]}``; each
answer row has the nine class probabilities, ``top_class``, ``melanoma_probability``, ``melanoma_alert``
and ``error`` (see :mod:`melanoma_lab.serving.classifier`).
"""

from __future__ import annotations

import os
import sys

import hydra
import mlflow
from omegaconf import DictConfig

from melanoma_lab.config.compose import CONF_PATH
from melanoma_lab.config.schema import register_configs, validate
from melanoma_lab.tracking.store import configured_tracking_uri


def serve_command(serving: DictConfig) -> list[str]:
    """The ``mlflow models serve`` command line for the ``serving`` group (the current environment, no conda)."""
    return [sys.executable, "-m", "mlflow", "models", "serve", "--model-uri", serving.model_uri,
            "--host", serving.host, "--port", str(serving.port), "--workers", str(serving.workers),
            "--env-manager", "local"]


@hydra.main(version_base="1.3", config_path=CONF_PATH, config_name="config")
def main(cfg: DictConfig) -> None:
    validate(cfg)
    uri = configured_tracking_uri(cfg.tracking, cfg.paths.mlruns_dir)
    mlflow.set_tracking_uri(uri)
    try:
        metadata = mlflow.models.get_model_info(cfg.serving.model_uri).metadata or {}
    except mlflow.exceptions.MlflowException as error:
        sys.exit(f"error: cannot serve {cfg.serving.model_uri}: {error}\n"
                 "Register a model first: melanoma-lab promote --study NAME (or --run RUN_ID), "
                 "or set serving.model_uri=runs:/<run_id>/model")
    if "classes" not in metadata:
        sys.exit(f"error: {cfg.serving.model_uri} was not logged by melanoma_lab (no class names in its metadata)")
    print(f"serving {cfg.serving.model_uri} ({len(metadata['classes'])} classes, input {metadata['image_size']} px) "
          f"on http://{cfg.serving.host}:{cfg.serving.port}/invocations", flush=True)
    # mlflow starts `uvicorn` by name: this interpreter's scripts folder (e.g. .venv/bin) goes first on PATH
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    os.execve(sys.executable, serve_command(cfg.serving), os.environ | {"MLFLOW_TRACKING_URI": uri, "PATH": path})


if __name__ == "__main__":
    register_configs()
    main()
