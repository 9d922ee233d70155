"""CSV-manifest datasets (csv, ham10000, isic2019): catalogs, lesion-grouped splits and folds, smoke runs."""

import csv
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from melanoma_lab.data.audit import audit_catalog
from melanoma_lab.data.contamination import set_aside_train_twins
from melanoma_lab.data.catalog import DatasetNotFoundError, fingerprint
from melanoma_lab.data.columns import GROUP_COLUMN
from melanoma_lab.data.manifests import ManifestError
from melanoma_lab.data.split import content_groups, fold_split, split_groups, train_val_split
from melanoma_lab.data.sources import load_catalog
from melanoma_lab.errors import ConfigError
from melanoma_lab.study.experiment import run_experiment
from melanoma_lab.tracking.store import tracking_uri
from tests.conftest import TINY_RUN, compose_config
from tests.manifest_fixtures import ham_root, isic2019_root  # noqa: F401 (fixtures)

SMALL = ["dataset.image_size=32", "dataset.batch_size=16"]


def _catalog(name: str, root: Path, *extra: str):
    return load_catalog(compose_config([f"dataset={name}", f"dataset.root={root}", *extra]).dataset)


def test_ham10000_reads_metadata_images_from_both_folders_and_lesion_ids(ham_root):
    catalog = _catalog("ham10000", ham_root)
    metadata = pd.read_csv(ham_root / "HAM10000_metadata.csv")
    assert catalog.classes == ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    assert len(catalog.files) == len(metadata) and not catalog.unexpected
    assert {Path(p).parent.name for p in catalog.files["path"]} == {"HAM10000_images_part_1", "HAM10000_images_part_2"}
    by_image = dict(zip(metadata["image_id"], metadata["lesion_id"]))
    assert all(by_image[Path(p).stem] == g for p, g in zip(catalog.files["path"], catalog.files[GROUP_COLUMN]))
    assert compose_config(["dataset=ham10000"]).dataset.melanoma_class == "mel"


def test_isic2019_labels_come_from_one_hot_columns_and_lesions_from_metadata(isic2019_root):
    catalog = _catalog("isic2019", isic2019_root)
    truth = pd.read_csv(isic2019_root / "ISIC_2019_Training_GroundTruth.csv")
    assert catalog.classes == ["AK", "BCC", "BKL", "DF", "MEL", "NV", "SCC", "VASC"]  # UNK has no image
    label = dict(zip(truth["image"], truth.drop(columns="image").idxmax(axis=1)))
    assert all(label[Path(p).stem] == lab for p, lab in zip(catalog.files["path"], catalog.files["label"]))
    without_lesion = catalog.files[catalog.files[GROUP_COLUMN] == ""]
    assert len(without_lesion) > 0  # every fifth image: each is its own group
    groups = split_groups(catalog.files, [])
    assert groups[without_lesion.index].nunique() == len(without_lesion)
    assert compose_config(["dataset=isic2019"]).dataset.melanoma_class == "MEL"


def _sides(files: pd.DataFrame, validation: pd.DataFrame) -> pd.Series:
    in_val = files["path"].isin(validation["path"])
    return in_val.groupby(files[GROUP_COLUMN]).nunique()


def test_a_lesion_with_several_images_never_straddles_train_and_validation(ham_root):
    files = _catalog("ham10000", ham_root).files
    assert files[GROUP_COLUMN].value_counts().max() >= 2
    grouped = files.assign(group=split_groups(files, []))
    for seed in range(5):
        train, validation = train_val_split(grouped, 0.2, seed)
        assert (_sides(files, validation) == 1).all(), f"seed {seed}: a lesion is on both sides"
        assert len(validation) > 0 and len(train) > len(validation)
    # without the lesion ids (content groups only) some lesion does straddle: the grouping is what prevents it
    straddles = [(_sides(files, train_val_split(files.assign(group=content_groups(files, [])), 0.2, s)[1]) > 1).any()
                 for s in range(5)]
    assert any(straddles)


def test_cross_validation_folds_keep_each_lesion_in_one_fold(isic2019_root):
    files = _catalog("isic2019", isic2019_root).files
    grouped = files.assign(group=split_groups(files, []))
    seen = []
    for fold in range(3):
        _, validation = fold_split(grouped, 3, fold, seed=1)
        seen += list(validation["path"])
        lesions = files[files[GROUP_COLUMN] != ""]
        assert (_sides(lesions, validation) == 1).all()
    assert sorted(seen) == sorted(files["path"])


def test_split_groups_join_lesions_through_a_shared_copy():
    files = pd.DataFrame({"path": list("abcde"), "sha256": ["1", "2", "2", "3", "4"],
                          GROUP_COLUMN: ["L1", "L1", "L2", "L2", ""]})
    groups = split_groups(files, [])
    assert groups[0] == groups[1] == groups[2] == groups[3] != groups[4]  # b and c are copies: L1 and L2 join


def _write_csv(root: Path, rows: list[list[str]], header: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with (root / "manifest.csv").open("w", newline="") as out:
        csv.writer(out).writerows([header, *rows])
    return root


def test_csv_manifest_with_split_column_sets_aside_train_images_of_test_lesions(ham_root, tmp_path):
    metadata = pd.read_csv(ham_root / "HAM10000_metadata.csv")
    first = metadata.groupby("lesion_id").filter(lambda g: len(g) >= 2)["lesion_id"].iloc[0]
    lesion_images = metadata.loc[metadata["lesion_id"] == first, "image_id"].tolist()
    rows = [[f"HAM10000_images_part_{1 + int(i[-1]) % 2}/{i}.jpg", dx, lesion,
             "test" if i == lesion_images[0] else "Train"] for i, dx, lesion
            in zip(metadata["image_id"], metadata["dx"], metadata["lesion_id"])]
    _write_csv(tmp_path / "mine", rows, ["file", "diagnosis", "lesion", "fold"])
    catalog = _catalog("csv", tmp_path / "mine", f"++dataset.source.image_dirs=[{ham_root}]",
                       "dataset.source.image_column=file", "dataset.source.label_column=diagnosis",
                       "dataset.source.group_column=lesion", "dataset.source.split_column=fold")
    assert catalog.files["split"].value_counts().to_dict() == {"train": len(rows) - 1, "test": 1}
    report = audit_catalog(catalog, near_duplicate_distance=0)
    assert {p["match"] for p in report["test_train_twins"]} == {"same_lesion"}
    kept = set_aside_train_twins(catalog.files, report, "exclude")
    assert not kept["path"].str.contains("|".join(lesion_images[1:])).any()  # its Train images are set aside


def test_csv_manifest_errors_name_the_key_and_the_way_out(ham_root, tmp_path):
    root = _write_csv(tmp_path / "bad", [["a.jpg", "mel", "later"]], ["image", "label", "split"])
    with pytest.raises(ManifestError, match=r"dataset.source.label_column='dx'.*columns are image, label, split"):
        _catalog("csv", root, "dataset.source.label_column=dx")
    with pytest.raises(ManifestError, match=r"\['later'\]; use train or test"):
        _catalog("csv", root, "dataset.source.split_column=split")
    with pytest.raises(DatasetNotFoundError, match="None of the 1 images"):
        _catalog("csv", root)
    with pytest.raises(DatasetNotFoundError, match="No manifest at"):
        _catalog("ham10000", tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="unexpected keyword argument 'colour'"):
        _catalog("ham10000", ham_root, "++dataset.source.colour=red")


def test_lesion_ids_change_the_data_fingerprint(ham_root):
    files = _catalog("ham10000", ham_root).files
    regrouped = files.assign(**{GROUP_COLUMN: files[GROUP_COLUMN].sample(frac=1, random_state=0).to_numpy()})
    assert fingerprint(files) != fingerprint(regrouped)
    assert fingerprint(files.drop(columns=GROUP_COLUMN)) == fingerprint(files.assign(**{GROUP_COLUMN: ""}))


def _finished_run(store: Path):
    client = mlflow.tracking.MlflowClient(tracking_uri(None, store))
    (run,) = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])
    return run


@pytest.mark.slow
def test_cli_m2_on_ham10000_leaves_a_finished_run(ham_root, tmp_path):
    result = subprocess.run([sys.executable, "-m", "melanoma_lab", "experiment=m2", "dataset=ham10000",
                             f"dataset.root={ham_root}", *TINY_RUN, *SMALL, "tracking.log_model=false",
                             f"paths.root_dir={tmp_path}"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    run = _finished_run(tmp_path / "mlruns")
    assert run.info.status == "FINISHED" and run.data.tags["dataset"] == "ham10000"
    assert run.data.params["dataset.melanoma_class"] == "mel" and "val_melanoma_roc_auc" in run.data.metrics
    assert run.data.metrics["train_images"] + run.data.metrics["val_images"] == len(load_catalog(
        compose_config(["dataset=ham10000", f"dataset.root={ham_root}"]).dataset).files)


@pytest.mark.slow
def test_m2_on_isic2019_leaves_a_finished_run(isic2019_root, tmp_path):
    cfg = compose_config(["experiment=m2", "dataset=isic2019", f"dataset.root={isic2019_root}", *TINY_RUN, *SMALL,
                          "tracking.log_model=false"], root=tmp_path)
    results = run_experiment(cfg, tmp_path / "run")
    run = _finished_run(tmp_path / "mlruns")
    assert run.info.status == "FINISHED" and "val_melanoma_sensitivity" in results
    assert "recall_MEL" in {k.removeprefix("val_") for k in run.data.metrics}
