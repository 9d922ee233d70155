"""The columns of a catalog's table of files (:class:`melanoma_lab.data.catalog.Catalog`), named once.

``path``, ``label``, ``split`` (train | test), ``sha256``, ``source`` (original | augmentor) and ``parent`` (for
generated images: the training image they derive from) are always there; sources that know which images show one
lesion (or patient) add ``group_id`` (empty: no group). A plain module of names, so that code working on the table
(splits, manifests, Augmentor) reads them without importing the catalog's scanning.
"""

COLUMNS = ["path", "label", "split", "sha256", "source", "parent"]
GROUP_COLUMN = "group_id"  # optional: images of one lesion or patient share it; splits keep them together
