"""Serve a melanoma_lab model over REST with ``mlflow models serve``: ``melanoma-lab serve``.

    melanoma-lab serve [serving.port=5001] [serving.model_uri=runs:/<run_id>/model]

Default: the registered champion (``melanoma-lab promote``) on 127.0.0.1:5001. Query it with
``POST /invocations`` and ``{"dataframe_records": [{"image": "<base64 of a JPEG/PNG file>"}]}``; each
answer row has the nine class probabilities, ``top_class``, ``melanoma_probability``, ``melanoma_alert``
and ``error`` (see :mod:`melanoma_lab.serving.classifier`).
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig



def serve_command(serving: DictConfig) -> list[str]:
    """The ``mlflow models serve`` command line for the ``serving`` group (the current environment, no conda)."""
    return [sys.executable, "-m", "mlflow", "models", "serve", "--model-uri", serving.model_uri,
            "--host", serving.host, "--port", str(serving.port), "--workers", str(serving.workers),
            "--env-manager", "local"]
