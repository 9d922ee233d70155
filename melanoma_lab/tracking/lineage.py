"""Dataset lineage in MLflow: the images a run trained, validated and was scored on, as ``mlflow.data`` datasets
logged with ``log_inputs`` (the UI's Dataset column, ``search_runs`` by dataset, a model version's inputs).

Each input is a table of the split's images (path, label, split, sha256 and, where known, the lesion/copy group)
named ``<dataset>-<context>``, whose digest is the data fingerprint of exactly those rows
(:func:`melanoma_lab.data.catalog.fingerprint`) and whose source is the dataset's root folder (or its download URL).
Contexts: ``training``, ``validation``, ``test``, ``held_out`` (a nested CV fold's outer fold) and ``evaluation``
(an external evaluation's images).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import warnings
from pathlib import Path

import pandas as pd
from mlflow.exceptions import MlflowException

from melanoma_lab.data.catalog import fingerprint

log = logging.getLogger(__name__)
COLUMNS = ("path", "label", "split", "sha256", "group")
RACE_RETRIES = 5
DUPLICATE_KEY = ("unique constraint", "duplicate key", "integrityerror")  # PostgreSQL, SQLite, SQLAlchemy
CONTEXT_TAG = "mlflow.data.context"  # what mlflow.log_input(dataset, context=...) sets


def digest(files: pd.DataFrame) -> str:
    """The data fingerprint of ``files``; for rows without contents hashes (generated images), a hash of their
    paths and labels."""
    try:
        return fingerprint(files)
    except (KeyError, AttributeError):
        text = "\n".join(f"{p}|{l}" for p, l in sorted(zip(files["path"].astype(str), files["label"].astype(str))))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def dataset_input(files: pd.DataFrame, name: str, source: str, context: str):
    """One MLflow ``DatasetInput``: the rows of ``files`` (lineage columns only), named, digested and sourced."""
    import mlflow
    from mlflow.entities import DatasetInput, InputTag

    table = files[[c for c in COLUMNS if c in files]].reset_index(drop=True).astype(str)
    with warnings.catch_warnings():  # a local folder matches MLflow's local source for both "" and file:// schemes
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways")
        dataset = mlflow.data.from_pandas(table, source=source, name=name, digest=digest(files), targets="label")
    return DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag(CONTEXT_TAG, context)])


def log_inputs(client, run_id: str | None, parts: dict[str, pd.DataFrame | None], dataset: str,
               source: str | None = None) -> None:
    """Log ``parts`` (context -> files; None or empty ones left out) as the inputs of ``run_id`` (nothing
    without a run). ``source``: where the images come from (default: the folder that holds them all)."""
    parts = {context: files for context, files in parts.items() if files is not None and len(files)}
    if run_id is None or not parts:
        return
    if source is None:
        source = os.path.commonpath([str(Path(p).resolve().parent) for files in parts.values() for p in files["path"]])
    inputs = [dataset_input(files, f"{dataset}-{context}", source, context) for context, files in parts.items()]
    for attempt in range(RACE_RETRIES):
        try:
            client.log_inputs(run_id, datasets=inputs)
            return
        except MlflowException as error:
            # MLflow stores a dataset once per experiment, name and digest, looked up then inserted: runs of a sweep
            # logging the same split at once race, and the loser's insert breaks the unique key. Its retry finds
            # the dataset the winner stored.
            if attempt + 1 == RACE_RETRIES or not any(text in str(error).lower() for text in DUPLICATE_KEY):
                raise
            log.info("dataset inputs of run %s: another run stored the same dataset at the same moment; retrying",
                     run_id)
            time.sleep(0.2 * (attempt + 1))
