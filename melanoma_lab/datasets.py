"""The configured dataset: ``dataset.source`` instantiated into a :class:`~melanoma_lab.data.catalog.Catalog`.

Sources are plain functions in :mod:`melanoma_lab.data` (class folders, synthetic, CSV manifests); a
``conf/dataset/*.yaml`` names one with ``source._target_`` and passes its keyword arguments.
"""

from __future__ import annotations

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from melanoma_lab.data.catalog import Catalog
from melanoma_lab.errors import ConfigError, UserError


def load_catalog(dataset: DictConfig) -> Catalog:
    """The catalog of ``dataset``: its ``source`` instantiated (``_target_`` names the source function)."""
    source = dataset.get("source")
    if not isinstance(source, DictConfig) or "_target_" not in source:
        raise ConfigError(f"dataset {dataset.get('name')!r} has no source._target_: name a source function in "
                          "conf/dataset/<name>.yaml, e.g. source: {_target_: melanoma_lab.data.sources.class_folders, "
                          "root: ${..root}}")
    try:
        catalog = instantiate(source, _convert_="all")
    except InstantiationException as error:
        if isinstance(error.__cause__, UserError):  # the source's own message says what to do (missing data...)
            raise error.__cause__ from None
        raise ConfigError(f"dataset.source ({source._target_}): {error}") from error
    if not isinstance(catalog, Catalog):
        raise ConfigError(f"dataset.source._target_={source._target_} returned {type(catalog).__name__}, not a "
                          "Catalog: a dataset source returns melanoma_lab.data.catalog.Catalog")
    return catalog
