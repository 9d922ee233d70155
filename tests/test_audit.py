import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from melanoma_lab.data.audit import DataAuditError, apply_policy, audit_catalog, summary
from melanoma_lab.data.catalog import scan
from melanoma_lab.data.split import split_groups
from melanoma_lab.data.synthetic import STYLES, generate, render_lesion


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


TURNS = [Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270,
         Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.TRANSPOSE,
         Image.Transpose.TRANSVERSE]  # the 7 views of an image other than itself


def _lesion(path, class_name: str, key: list[int], size: int = 64):
    """One synthetic lesion (``render_lesion`` with the generator seeded by ``key``), saved like ``generate``'s."""
    rng = np.random.default_rng(key)
    Image.fromarray(render_lesion(STYLES[class_name], size, rng)).save(path, quality=92)


def test_rotated_and_flipped_copies_are_near_duplicates_and_a_different_lesion_matching_a_rotated_hash_is_not(
        tmp_path):
    """Issue 26, point 5: each of the 7 other views of a Train image (re-encoded, one resized) joins its near-duplicate
    group (and its split group); two different lesions whose hashes match at a rotated view do not."""
    root = generate(tmp_path / "data", ["melanoma", "nevus", "vascular lesion"], 12, 3, 64, seed=5)
    train = root / "Train"
    original = sorted((train / "melanoma").iterdir())[0]
    with Image.open(original) as image:
        for n, turn in enumerate(TURNS):
            turned = image.transpose(turn)
            (turned.resize((90, 90), Image.Resampling.BICUBIC) if n == 3 else turned).save(
                train / "nevus" / f"turned{n}.jpg", quality=80)
    # two different synthetic lesions (a nevus and a vascular lesion) whose hashes are 30 bits apart, 4 at view 1
    lookalikes = train / "nevus" / "lookalike.jpg", train / "vascular lesion" / "lookalike.jpg"
    _lesion(lookalikes[0], "nevus", [11, 0, 4, 44])
    _lesion(lookalikes[1], "vascular lesion", [11, 0, 8, 39])

    catalog = scan(root, [".jpg"])
    report = audit_catalog(catalog, near_duplicate_distance=4)
    copies = {str(original)} | {str(train / "nevus" / f"turned{n}.jpg") for n in range(len(TURNS))}
    groups = [{item["path"] for item in group} for group in report["near_duplicate_groups"]]
    assert copies in groups
    rotated = {frozenset((c["a"], c["b"])) for c in report["rotated_copies"]}
    assert all(frozenset((str(original), copy)) in rotated for copy in copies - {str(original)})
    assert min(c["correlation"] for c in report["rotated_copies"]) >= 0.8
    group = split_groups(catalog.files, report["near_duplicate_groups"])
    assert group[catalog.files["path"].isin(copies)].nunique() == 1

    pair = {str(p) for p in lookalikes}
    assert not any(pair <= members for members in groups)
    (rejected,) = [c for c in report["rotated_candidates_rejected"] if {c["a"], c["b"]} == pair]
    assert rejected["view"] != 0 and rejected["correlation"] < 0.8  # the hashes matched; the pixels did not
    assert ("near-duplicate groups (perceptual hash): 1 (8 files), of which rotated or flipped copies: 28 pairs; "
            "rotated-hash matches the pixels rejected: 1") in summary(report)


def test_view_zero_of_the_dihedral_hashes_is_imagehash_phash(tmp_path):
    import imagehash

    from melanoma_lab.data.dihedral import view_hashes

    root = generate(tmp_path / "data", ["melanoma", "nevus"], 6, 2, 48, seed=2)
    for path in sorted((root / "Train").rglob("*.jpg")):
        with Image.open(path) as image:
            image = image.convert("RGB")
            hashes = view_hashes(image)
            assert hashes[0] == str(imagehash.phash(image))
            assert hashes[1] == str(imagehash.phash(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
