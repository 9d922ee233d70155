"""Dataset sources: plug-ins that turn ``dataset.source`` into a :class:`~melanoma_lab.data.catalog.Catalog`.

A source is a plain function with typed keyword parameters that returns a Catalog (one row per image: ``path``,
``label``, ``split``, ``sha256``, ``source``, ``parent`` and ``group_id``). ``conf/dataset/<name>.yaml`` names it
under ``source._target_`` with its arguments; :func:`load_catalog` instantiates it. Class folders and the synthetic
set are here; CSV manifests (HAM10000, ISIC 2019, your own) in :mod:`melanoma_lab.data.manifests`.
:func:`melanoma_lab.datasets.load_catalog` instantiates the configured one.
"""

from __future__ import annotations

from melanoma_lab.data import synthetic as synthetic_data
from melanoma_lab.data.catalog import IMAGE_EXTENSIONS, Catalog, scan
from melanoma_lab.data.synthetic import ISIC_CLASSES


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

