import zipfile
from pathlib import Path

import pytest

from melanoma_lab.data.catalog import scan
from melanoma_lab.data.download import ArchiveError, download, extract, main, verify_archive
from melanoma_lab.data.synthetic import generate


def _zip_folder(folder: Path, archive: Path, prefix: str) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, f"{prefix}{path.relative_to(folder).as_posix()}")
    return archive


@pytest.fixture
def archive(tmp_path) -> Path:
    source = generate(tmp_path / "src", ["melanoma", "nevus"], 6, 2, 16, seed=0)
    return _zip_folder(source, tmp_path / "isic.zip", "Skin cancer ISIC/")


def test_verify_finds_the_dataset_folder(archive):
    assert verify_archive(archive) == "Skin cancer ISIC"


def test_extract_is_atomic_and_loadable(archive, tmp_path):
    dest = extract(archive, tmp_path / "data" / "isic9")
    catalog = scan(dest, [".jpg"])
    assert catalog.classes == ["melanoma", "nevus"] and len(catalog.split("test")) == 4
    assert (dest / "SOURCE.json").is_file()
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["isic9"], "staging folder left behind"
    with pytest.raises(FileExistsError):
        extract(archive, dest)


def test_corrupt_and_wrong_archives_are_refused(tmp_path, archive):
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(ArchiveError, match="not a zip"):
        verify_archive(tmp_path / "junk.zip")
    flat = tmp_path / "flat.zip"
    with zipfile.ZipFile(flat, "w") as zf:
        zf.writestr("images/a.jpg", b"x")
    with pytest.raises(ArchiveError, match="no Train/ folder"):
        verify_archive(flat)
    data = bytearray(archive.read_bytes())
    middle = data.index(b"JFIF") + 200  # flip bytes inside a stored image
    data[middle:middle + 8] = b"\x00" * 8
    (tmp_path / "bad.zip").write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="corrupt"):
        verify_archive(tmp_path / "bad.zip")
    assert not (tmp_path / "data").exists()


def test_offline_download_fails_clearly(tmp_path, capsys):
    with pytest.raises(ConnectionError, match="--archive"):
        download("http://127.0.0.1:9/isic.zip", tmp_path / "isic.zip", timeout=5)
    assert not list(tmp_path.iterdir())
    assert main(["--url", "http://127.0.0.1:9/isic.zip", "--dest", str(tmp_path / "isic9")]) == 1
    assert "dataset=synthetic" in capsys.readouterr().err


def test_archive_members_cannot_escape_the_extraction_folder(archive, tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(evil, "w") as zf:
        for item in source.infolist():
            zf.writestr(item, source.read(item))
        zf.writestr("Skin cancer ISIC/../../escaped.txt", b"x")
    with pytest.raises(ArchiveError, match="escapes"):
        extract(evil, tmp_path / "data" / "isic9")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "data" / "isic9").exists()
