"""Shared fixtures: real configs composed from conf/, pointed at a temporary project folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from omegaconf import DictConfig

from melanoma_lab.composition import CONF_DIR, compose
from melanoma_lab.config import register_configs

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "isic-9class-180px"

# A tiny synthetic set (9 classes, 32 px) and a tiny run (one epoch, small model).
TINY_DATA = ["dataset=synthetic", "dataset.source.train_images=120", "dataset.source.test_images=45",
             "dataset.source.generated_size=32", "dataset.image_size=32", "dataset.batch_size=16"]
TINY_RUN = ["trainer=smoke", "model.filters=[8,16]", "model.dense_units=[16]"]
TINY = TINY_DATA + TINY_RUN
TINY_AUGMENTOR = ["imbalance.extra_per_class=6", "imbalance.workers=1"]  # with imbalance=augmentor (m3)

register_configs()


def compose_config(overrides: list[str], root: Path | None = None, config_name: str = "config") -> DictConfig:
    """Compose conf/<config_name>.yaml with ``overrides`` (as the CLI would), rooted at ``root``."""
    rooted = overrides + ([f"paths.root_dir={root}"] if root is not None else [])
    return compose(rooted, config_name)


@pytest.fixture(autouse=True)
def _isolated_tracking(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MELANOMA_LAB_DATA", raising=False)


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One data cache for the session, so the tiny synthetic set is generated once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def tiny_cfg(tmp_path, shared_cache):
    """A factory: the tiny synthetic config plus extra overrides, rooted in ``tmp_path``."""

    def make(*extra: str) -> DictConfig:
        return compose_config(TINY + [f"paths.cache_dir={shared_cache}", *extra], root=tmp_path)

    return make


@pytest.fixture
def real_data() -> Path:
    if not (REAL_DATA / "Train").is_dir():
        pytest.skip("real ISIC data not present at ../shared/data/isic-9class-180px")
    return REAL_DATA


def pytest_configure(config):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture
def trained_model(tiny_cfg, tmp_path):
    """A tiny m2 model trained and logged into tmp_path/mlruns: (model URI, run, catalog, store folder)."""
    import mlflow

    from melanoma_lab.datasets import load_catalog
    from melanoma_lab.experiment import run_experiment
    from melanoma_lab.tracking.store import tracking_uri

    cfg = tiny_cfg("experiment=m2", "trainer.epochs=2")
    run_experiment(cfg, tmp_path / "run")
    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    run = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])[0]
    mlflow.set_tracking_uri(tracking_uri(None, tmp_path / "mlruns"))
    return f"runs:/{run.info.run_id}/model", run, load_catalog(cfg.dataset), tmp_path / "mlruns"
