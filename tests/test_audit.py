import json
import shutil
import subprocess
import sys

import pytest

from melanoma_lab.data.audit import DataAuditError, apply_policy, audit_catalog, summary
from melanoma_lab.data.catalog import scan
from melanoma_lab.data.synthetic import generate


@pytest.fixture
def defective(tmp_path):
    """A small dataset with every defect the audit looks for."""
    root = generate(tmp_path / "data", ["melanoma", "nevus", "vascular lesion"], 18, 6, 32, seed=5)
    train = root / "Train"
    mel = sorted((train / "melanoma").iterdir())
    shutil.copy(mel[0], train / "nevus" / "copy_of_melanoma.jpg")  # label conflict
    shutil.copy(mel[1], train / "melanoma" / "twin.jpg")  # same-label duplicate
    shutil.copy(sorted((root / "Test" / "nevus").iterdir())[0], train / "nevus" / "leaked.jpg")  # test leak
    (train / "nevus" / "truncated.jpg").write_bytes(mel[2].read_bytes()[:300])
    (train / "nevus" / "empty.jpg").write_bytes(b"")
    (train / "vascular lesion" / "notes.jpg").write_text("not an image")
    (train / "empty class").mkdir()
    (root / "Test" / "unknown class").mkdir()
    return root


def test_audit_finds_every_defect(defective):
    train = defective / "Train"
    report = audit_catalog(scan(defective, [".jpg"]), near_duplicate_distance=4)
    conflicts = [sorted(item["label"] for item in group) for group in report["label_conflicts"]]
    assert conflicts == [["melanoma", "nevus"]]
    assert len(report["duplicate_groups"]) == 2
    leak = report["cross_split_duplicates"]
    assert len(leak) == 1 and sorted(item["split"] for item in leak[0]) == ["test", "train"]
    assert {p.split("/")[-1] for p in report["unreadable_files"]} == {"truncated.jpg", "empty.jpg", "notes.jpg"}
    assert report["empty_class_folders"] == [str(train / "empty class")]
    assert report["unexpected_entries"] == [str(defective / "Test" / "unknown class")]
    assert report["class_counts"]["train"]["nevus"] >= 4
    assert report["image_sizes"]["width"]["max"] == 32
    text = summary(report)
    assert "label conflicts (identical bytes, different labels): 1 groups, 2 files" in text
    assert "truncated.jpg" in text


def test_conflict_policies(defective):
    catalog = scan(defective, [".jpg"])
    report = audit_catalog(catalog, near_duplicate_distance=4)
    assert apply_policy(catalog.files, report, "warn").equals(catalog.files)
    dropped = apply_policy(catalog.files, report, "drop")
    names = set(dropped["path"].str.split("/").str[-1])
    assert "copy_of_melanoma.jpg" not in names and "leaked.jpg" not in names
    assert len(dropped) == len(catalog.files) - 3  # both conflicting copies and the Train copy of the leak
    with pytest.raises(DataAuditError, match="conflict_policy=drop"):
        apply_policy(catalog.files, report, "fail")


def test_audit_command_writes_audit_json(defective, tmp_path):
    out = tmp_path / "audit_out"
    result = subprocess.run([sys.executable, "-m", "melanoma_lab", "audit", f"dataset.root={defective}",
                             f"audit.out={out}", f"paths.root_dir={tmp_path}"],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / "audit.json").read_text())
    for key in ("duplicate_groups", "label_conflicts", "cross_split_duplicates", "near_duplicate_groups",
                "unreadable_files", "class_counts"):
        assert key in report
    assert "label conflicts" in result.stdout and str(out / "audit.json") in result.stdout


def test_a_refused_audit_is_a_user_error_the_cli_prints_without_traceback(defective):
    from melanoma_lab.errors import UserError
    from melanoma_lab.study.preparation import UnreadableImagesError

    catalog = scan(defective, [".jpg"])
    with pytest.raises(UserError, match="conflict_policy"):
        apply_policy(catalog.files, audit_catalog(catalog, near_duplicate_distance=4), "fail")
    assert issubclass(UnreadableImagesError, UserError)  # dataset.on_unreadable=fail: the message says what to do
