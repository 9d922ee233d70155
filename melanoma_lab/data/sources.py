"""Resolve the configured dataset to a folder and scan it."""

from __future__ import annotations

from omegaconf import DictConfig

from melanoma_lab.data import synthetic
from melanoma_lab.data.catalog import Catalog, scan


def load_catalog(dataset: DictConfig, paths: DictConfig) -> Catalog:
    """The catalog of ``dataset``; the synthetic set is generated into the cache on first use."""
    root = dataset.root
    if dataset.name == "synthetic" and root is None:
        root = synthetic.ensure_dataset(paths.cache_dir, list(dataset.class_names), dataset.train_images,
                                        dataset.test_images, dataset.generated_size, dataset.generator_seed)
    return scan(root, list(dataset.extensions))
