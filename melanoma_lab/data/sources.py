"""Dataset sources: plug-ins that turn ``dataset.source`` into a :class:`~melanoma_lab.data.catalog.Catalog`.

A source is a plain function with typed keyword parameters that returns a Catalog (one row per image: ``path``,
``label``, ``split``, ``sha256``, ``source``, ``parent`` and ``group_id``). ``conf/dataset/<name>.yaml`` names it
under ``source._target_`` with its arguments; :func:`load_catalog` instantiates it. Class folders and the synthetic
set are here; CSV manifests (HAM10000, ISIC 2019, your own) in :mod:`melanoma_lab.data.manifests`.
"""

from __future__ import annotations

from omegaconf import DictConfig

from melanoma_lab.config.plugins import build
from melanoma_lab.data import synthetic as synthetic_data
from melanoma_lab.data.catalog import IMAGE_EXTENSIONS, Catalog, scan
from melanoma_lab.data.synthetic import ISIC_CLASSES
from melanoma_lab.errors import ConfigError


def class_folders(root: str, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> Catalog:
    """``<root>/Train/<class>/<image>`` and optionally ``<root>/Test/<class>/<image>`` (the ISIC 9-class layout)."""
    return scan(root, list(extensions))


def synthetic(cache_dir: str, train_images: int, test_images: int, generated_size: int, root: str | None = None,
              generator_seed: int = 0, class_names: tuple[str, ...] = tuple(ISIC_CLASSES)) -> Catalog:
    """The built-in synthetic lesions in the class-folder layout, generated once into ``cache_dir`` (or read from
    ``root`` when given). The sizes have no default here: ``conf/dataset/synthetic.yaml`` states them."""
    if root is None:
        root = synthetic_data.ensure_dataset(cache_dir, list(class_names), train_images, test_images,
                                             generated_size, generator_seed)
    return scan(root, list(IMAGE_EXTENSIONS))


def load_catalog(dataset: DictConfig) -> Catalog:
    """The catalog of ``dataset``: its ``source`` instantiated (``_target_`` names the source function)."""
    source = dataset.get("source")
    if not isinstance(source, DictConfig) or "_target_" not in source:
        raise ConfigError(f"dataset {dataset.get('name')!r} has no source._target_: name a source function in "
                          "conf/dataset/<name>.yaml, e.g. source: {_target_: melanoma_lab.data.sources.class_folders, "
                          "root: ${..root}}")
    catalog = build(source, "dataset.source")  # a UserError of the source's says what to do (missing data...)
    if not isinstance(catalog, Catalog):
        raise ConfigError(f"dataset.source._target_={source._target_} returned {type(catalog).__name__}, not a "
                          "Catalog: a dataset source returns melanoma_lab.data.catalog.Catalog")
    return catalog
