"""Shared fixtures: real configs composed from conf/, pointed at a temporary project folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from omegaconf import DictConfig

from melanoma_lab.config.compose import CONF_DIR, compose
from melanoma_lab.config.schema import register_configs
from tests.tiers import pytest_addoption, pytest_collection_modifyitems, pytest_terminal_summary  # noqa: F401 (hooks)

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "isic-9class-180px"

# A tiny synthetic set (9 classes, 32 px) and a tiny run (one epoch, small model).
TINY_DATA = ["dataset=synthetic", "dataset.source.train_images=120", "dataset.source.test_images=45",
             "dataset.source.generated_size=32", "dataset.image_size=32", "dataset.batch_size=16"]
TINY_RUN = ["trainer=smoke", "model.filters=[8,16]", "model.dense_units=[16]"]
TINY = TINY_DATA + TINY_RUN
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))  # every experiment file
TINY_AUGMENTOR = ["imbalance.extra_per_class=6", "imbalance.workers=1"]  # with imbalance=augmentor (m3)

register_configs()

HOW_TO_INSTALL = {"torch": "make install EXTRAS=dev,jax,torch, or .ci/run, which adds the CPU torch wheel",
                  "jax": "make install (its default EXTRAS=dev,jax)", "tensorflow": "make install"}


def not_installed(package: str) -> str:
    """The reason a test skips for want of ``package``, with how to get it."""
    return f"{package} is not installed ({HOW_TO_INSTALL.get(package, 'make install-cluster')})"


OUTSIDE_CHOICES = ("MLFLOW_TRACKING_URI", "MELANOMA_LAB_DATA")  # a user's store and data: never a test's


@pytest.fixture(scope="session", autouse=True)
def _without_outside_choices():
    saved = {name: os.environ.pop(name) for name in OUTSIDE_CHOICES if name in os.environ}
    yield
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def _isolated_tracking():
    """No test sees, or leaves behind, a store chosen by the environment or by MLflow's fluent API.

    ``mlflow.set_tracking_uri`` also sets ``MLFLOW_TRACKING_URI`` (tracking.store.fluent_tracking_uri), which
    :func:`~melanoma_lab.tracking.store.tracking_uri` prefers to any folder: left behind by one test, it sent the
    next module-scoped fixture's search into that test's store (issue 23: the jax backend fixture found only an
    unrelated m3). Cleared before each test and again after it, so fixtures of any scope start clean. It asks for
    no other fixture, so it is set up first and torn down last: after the test's own ``monkeypatch`` has put
    back whatever the test found (a test that deletes the variable that ``trained_model`` set restores it).
    """
    for name in OUTSIDE_CHOICES:
        os.environ.pop(name, None)
    yield
    forget_tracking_state()
    os.environ.pop("MELANOMA_LAB_DATA", None)


@pytest.fixture(autouse=True)
def _float32_policy():
    """Every test starts in Keras' float32 policy: ``trainer.precision=auto`` (mixed_bfloat16 on this CPU) sets the
    global dtype policy for the whole process, and a model built later in another test was then bfloat16 (the
    Grad-CAM cross-backend test compared a bfloat16 TensorFlow map with a float32 JAX one after test_fine_tuning)."""
    yield
    keras = sys.modules.get("keras")
    if keras is not None:
        keras.mixed_precision.set_global_policy("float32")


def forget_tracking_state() -> None:
    """End any active MLflow run and forget the store MLflow's fluent API and the environment point at."""
    mlflow = sys.modules.get("mlflow")  # not imported: nothing of it to forget
    if mlflow is not None:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(None)  # MLflow's own default again (and its variable unset)
        forget_artifact_repositories()
    os.environ.pop("MLFLOW_TRACKING_URI", None)


def forget_artifact_repositories() -> None:
    """Empty MLflow's in-process cache of artifact repositories by run id (a copied store has the same ids)."""
    from mlflow.tracking._tracking_service import utils

    utils._artifact_repos_cache.clear()


def training_recipe(cfg):
    """The training recipe of a composed config, picked as the orchestrators pick it."""
    from melanoma_lab.training.fit import TrainingRecipe

    return TrainingRecipe(*map(cfg.get, TrainingRecipe._fields))


def data_recipe(cfg):
    """The data recipe of a composed config, picked as the orchestrators pick it."""
    from melanoma_lab.study.preparation import DataRecipe

    return DataRecipe(cfg.dataset, cfg.imbalance, cfg.audit, cfg.study, cfg.trainer.seed, cfg.paths.cache_dir)


def compose_config(overrides: list[str], root: Path | None = None, config_name: str = "config") -> DictConfig:
    """Compose conf/<config_name>.yaml with ``overrides`` (as the CLI would), rooted at ``root``."""
    rooted = overrides + ([f"paths.root_dir={root}"] if root is not None else [])
    return compose(rooted, config_name)


@pytest.fixture(scope="session", autouse=True)
def _store_schema_made_once(tmp_path_factory):
    """A new SQLite MLflow store gets its tables by copying those MLflow made once this session (SQLite's backup
    API) instead of running its ~50 migrations again: 1.2 s less for each of the ~100 stores the suite makes.
    The copy is MLflow's own schema of the installed version, made by the same function; MLflow still verifies
    it and creates the Default experiment in the new store as usual. Only this pytest process is affected."""
    import sqlite3

    import mlflow.store.db.utils as db_utils
    import sqlalchemy

    made_by_mlflow = db_utils._initialize_tables
    template = tmp_path_factory.mktemp("store_schema") / "mlflow.db"
    engine = sqlalchemy.create_engine(f"sqlite:///{template}")
    made_by_mlflow(engine)
    engine.dispose()

    def initialize_tables(engine) -> None:
        if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
            made_by_mlflow(engine)
            return
        connection = engine.raw_connection()
        try:
            with sqlite3.connect(template) as source:
                source.backup(connection.driver_connection)
        finally:
            connection.close()

    db_utils._initialize_tables = initialize_tables
    yield
    db_utils._initialize_tables = made_by_mlflow


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


def copy_store(source: Path, target: Path) -> Path:
    """Copy the MLflow store folder ``source`` (SQLite database and artifacts) to ``target``, a new folder: the
    absolute paths the store records (artifact locations, logged-model URIs) are moved along, so the copy is a
    store of its own that tests may write to without touching the source."""
    import shutil
    import sqlite3

    shutil.copytree(source, target)
    old, new = str(source.resolve()), str(target.resolve())
    with sqlite3.connect(target / "mlflow.db") as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for column in db.execute(f'PRAGMA table_info("{table}")').fetchall():
                if column[2].upper().startswith(("VARCHAR", "TEXT", "CHAR")):
                    db.execute(f'UPDATE "{table}" SET "{column[1]}" = REPLACE("{column[1]}", ?, ?) '
                               f'WHERE "{column[1]}" LIKE ?', (old, new, f"%{old}%"))
    forget_artifact_repositories()  # MLflow caches each run id's artifact folder: the copy has the same run ids
    for path in target.rglob("*"):
        if path.is_file() and path.suffix in ("", ".yaml", ".json", ".txt") and path.stat().st_size < 1_000_000:
            text = path.read_bytes()
            if old.encode() in text:
                path.write_bytes(text.replace(old.encode(), new.encode()))
    return target


@pytest.fixture(scope="session")
def _trained_store(tmp_path_factory, shared_cache):
    """A tiny m2 trained and logged once per test run: (the composed config, its store folder)."""
    from melanoma_lab.study.experiment import run_experiment

    root = tmp_path_factory.mktemp("trained_model")
    cfg = compose_config(TINY + [f"paths.cache_dir={shared_cache}", "experiment=m2", "trainer.epochs=2"], root=root)
    run_experiment(cfg, root / "run")
    forget_tracking_state()
    return cfg, root / "mlruns"


@pytest.fixture
def trained_model(_trained_store, tmp_path):
    """The session's tiny m2 in a copy of its store, tmp_path/mlruns, that the test may write to: (model URI, run,
    catalog, store folder). MLflow's fluent API points at the copy for the test (and is reset after it)."""
    import mlflow

    from melanoma_lab.data.sources import load_catalog
    from melanoma_lab.tracking.store import tracking_uri

    cfg, source = _trained_store
    store = copy_store(source, tmp_path / "mlruns")
    client = mlflow.tracking.MlflowClient(tracking_uri(None, store))
    (run,) = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])
    mlflow.set_tracking_uri(tracking_uri(None, store))
    return f"runs:/{run.info.run_id}/model", run, load_catalog(cfg.dataset), store

