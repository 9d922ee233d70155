"""Data preparation for one run: audit and policy, split (or fold), rebalance the training part, decode.

Rebalancing happens after the split, on training rows only, and :func:`check_no_leak` refuses any
validation image (or anything generated from one) in training.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import pandas as pd
from omegaconf import DictConfig

from melanoma_lab.data.audit import apply_policy, audit_catalog, summary, write_report
from melanoma_lab.data.calibration_slice import calibration_fraction, split_off_calibration
from melanoma_lab.data.contamination import set_aside_train_twins, unscored_test_images
from melanoma_lab.data.catalog import Catalog
from melanoma_lab.data.pipeline import DecodedImages, PreparedData, decode, decode_to_disk
from melanoma_lab.data.sources import load_catalog
from melanoma_lab.errors import ConfigError, UserError
from melanoma_lab.evaluation.inference import preprocess
from melanoma_lab.data.split import fold_split, split_groups, train_val_split
from melanoma_lab.config.plugins import build

log = logging.getLogger(__name__)
_AUDITS_LOGGED: set[str] = set()  # the audit summaries this process has logged


@dataclass
class AuditedData:
    """What every run (or fold) of one config shares: the catalog, its audit and the files to use."""

    catalog: Catalog
    report: dict
    files: pd.DataFrame  # after the audit's policies, with ``group`` (copies share one) and ``train_twin`` columns


class DataRecipe(NamedTuple):
    """What preparing a run's data reads of a composed config: the ``dataset``, ``imbalance``, ``audit`` and
    ``study`` groups, the seed (``trainer.seed``) and the cache folder (``paths.cache_dir``)."""

    dataset: DictConfig
    imbalance: DictConfig
    audit: DictConfig
    study: DictConfig
    seed: int
    cache_dir: str


def load_audited_data(dataset: DictConfig, audit: DictConfig, output_dir: Path) -> AuditedData:
    """Scan and audit the dataset, write ``audit.json``, apply the conflict policy, set aside Train copies of
    Test images (``audit.test_contamination``) and group copies and images of one lesion (the source's ``group_id``)."""
    catalog = load_catalog(dataset)
    report = audit_catalog(catalog, audit.near_duplicate_distance)
    written = write_report(report, audit.out or output_dir)
    first = _log_audit(summary(report), written)
    files = apply_policy(catalog.files, report, audit.conflict_policy)
    files = set_aside_train_twins(files, report, audit.test_contamination, announce=first)
    files = files.assign(group=split_groups(files, report["near_duplicate_groups"]))
    return AuditedData(catalog, report, files)


def _log_audit(text: str, written: Path) -> bool:
    """The audit's summary, once per process: the jobs of a sweep (and a run's folds) audit the same data, and
    after the first the log names the job's own ``audit.json`` instead. True the first time."""
    if text in _AUDITS_LOGGED:
        log.info("data audit as above (%s)", written)
        return False
    _AUDITS_LOGGED.add(text)
    log.info("\n%s", text)
    return True


class DataLeakError(RuntimeError):
    """Something from the validation split (or derived from it) reached training."""


class UnreadableImagesError(UserError, RuntimeError):
    """Image files failed to decode and ``dataset.on_unreadable=fail``."""


def check_no_leak(train: pd.DataFrame, validation: pd.DataFrame) -> None:
    """Raise :class:`DataLeakError` unless training is disjoint from validation (files, bytes, parents)."""
    originals = train[train["source"] == "original"]
    shared_paths = set(train["path"]) & set(validation["path"])
    shared_bytes = set(originals["sha256"]) & set(validation["sha256"])
    foreign_parents = set(train.loc[train["source"] != "original", "parent"]) - set(originals["path"])
    if shared_paths or shared_bytes or foreign_parents:
        raise DataLeakError(f"validation leaks into training: {len(shared_paths)} shared files, "
                            f"{len(shared_bytes)} shared contents, {len(foreign_parents)} generated images "
                            "derived from non-training images")


def _decode(files: pd.DataFrame, classes: list[str], size: int, on_unreadable: str,
            disk_cache: Path | None = None) -> DecodedImages:
    decoded = decode(files, classes, size) if disk_cache is None else decode_to_disk(files, classes, size, disk_cache)
    if decoded.failures and on_unreadable == "fail":
        listing = "\n".join(f"  {path}: {reason}" for path, reason in decoded.failures.items())
        raise UnreadableImagesError(f"{len(decoded.failures)} files are not readable images:\n{listing}\n"
                                    "Remove them, or set dataset.on_unreadable=skip")
    for path, reason in decoded.failures.items():
        log.warning("skipping unreadable image %s (%s)", path, reason)
    return decoded


def training_disk_cache(dataset: DictConfig, cache_dir: str, images: int) -> Path | None:
    """Where the training split is decoded when it exceeds ``dataset.ram_budget_mb`` (None: it fits in RAM)."""
    budget, size = dataset.ram_budget_mb, dataset.image_size
    needed_mb = images * size * size * 3 / 2**20
    if budget is None or needed_mb <= budget:
        return None
    log.info("training split needs %.0f MB decoded, over dataset.ram_budget_mb=%s: decoding to %s/decoded and "
             "reading it batch by batch", needed_mb, budget, cache_dir)
    return Path(cache_dir) / "decoded"


def split_labelled(recipe: DataRecipe, labelled: pd.DataFrame, fold: int | None
                   ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """(train, validation, held out). Without ``fold``: train/validation by ``dataset.val_fraction``, nothing
    held out. With a cross-validation ``fold``: the folds are made of Train less the calibration slice of a fold
    ensemble (:mod:`melanoma_lab.data.calibration_slice`); the fold is validation, or, with ``study.nested``, it is held
    out and validation (which chooses the epoch and the alert threshold) is an inner split of the fold's training
    part, content-grouped and stratified like the folds."""
    seed, val_fraction = recipe.seed, recipe.dataset.val_fraction
    if fold is None:
        return *train_val_split(labelled, val_fraction, seed), None
    labelled, _ = split_off_calibration(labelled, calibration_fraction(recipe.study), seed)  # never in a fold
    train, outer = fold_split(labelled, recipe.study.cv_folds, fold, seed)
    if not recipe.study.get("nested", False):
        return train, outer, None
    return *train_val_split(train, val_fraction, seed), outer


def preprocessed(decoded: DecodedImages, dataset: DictConfig) -> DecodedImages:
    """Decoded images as every model of this ``dataset`` config sees them (its colour constancy, if any)."""
    power, grey = dataset.get("colour_constancy_power"), dataset.get("colour_constancy_grey")
    return decoded if power is None else replace(decoded, images=preprocess(decoded.images, power, grey))


def decode_split(dataset: DictConfig, classes: list[str], files: pd.DataFrame) -> DecodedImages:
    """An evaluation split decoded in RAM and preprocessed like every prediction (e.g. Test for a fold ensemble)."""
    decoded = _decode(files, classes, dataset.image_size, dataset.on_unreadable)
    return preprocessed(decoded, dataset)


def prepare_data(recipe: DataRecipe, catalog: Catalog, files: pd.DataFrame, fold: int | None = None) -> PreparedData:
    """Split (train/validation, or cross-validation ``fold`` of ``study.cv_folds``, see :func:`split_labelled`),
    rebalance the training split only, decode everything once and preprocess it like every prediction
    (:func:`melanoma_lab.evaluation.inference.preprocess`)."""
    dataset, seed = recipe.dataset, recipe.seed
    labelled = files[files["split"] == "train"].reset_index(drop=True)
    train, validation, held_out = split_labelled(recipe, labelled, fold)
    counts_before = {c: int((train["label"] == c).sum()) for c in catalog.classes}
    rebalanced = build(recipe.imbalance, "imbalance", train=train, seed=seed, cache_dir=recipe.cache_dir)
    train = rebalanced.train
    check_no_leak(train, validation)
    if held_out is not None:
        check_no_leak(train, held_out)
    size, policy = dataset.image_size, dataset.on_unreadable
    test_files = files[files["split"] == "test"]
    disk_cache = training_disk_cache(dataset, recipe.cache_dir, len(train))
    power = dataset.get("colour_constancy_power")
    if disk_cache is not None and power is not None:
        raise ConfigError("dataset.colour_constancy_power corrects the decoded images in RAM, and the training split "
                          "exceeds dataset.ram_budget_mb: raise dataset.ram_budget_mb (or null), or set "
                          "dataset.colour_constancy_power=null")
    parts = (train, validation, test_files) + (() if held_out is None else (held_out,))
    decoded = [_decode(part, catalog.classes, size, policy, disk_cache if part is train else None) for part in parts]
    skipped = {path: reason for part in decoded for path, reason in part.failures.items()}
    counts_after = {c: int((decoded[0].files["label"] == c).sum()) for c in catalog.classes}
    decoded = [preprocessed(part, dataset) for part in decoded]
    return PreparedData(
        classes=catalog.classes, train=decoded[0], validation=decoded[1],
        test=decoded[2] if len(decoded[2].labels) else None, counts_before=counts_before,
        counts_after=counts_after, skipped=skipped,
        test_unscored=unscored_test_images(catalog, files, decoded[2].failures, recipe.audit.conflict_policy),
        class_weight=rebalanced.class_weight(decoded[0].labels, len(catalog.classes)) if rebalanced.class_weight
        else None, held_out=decoded[3] if held_out is not None else None)
