import zipfile
from pathlib import Path

import pytest

from melanoma_lab.data.catalog import scan
from melanoma_lab.cli.data import main
from melanoma_lab.data.archives import ArchiveError, download
from melanoma_lab.data.download import extract, verify_archive
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


@pytest.mark.slow
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


# --- CSV-manifest presets (ham10000, isic2019), from local files and file:// URLs -------------------------------

def _zip_files(archive: Path, files: dict[str, Path | bytes]) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for name, content in files.items():
            if isinstance(content, Path):
                zf.write(content, name)
            else:
                zf.writestr(name, content)
    return archive


def test_ham10000_from_a_dataverse_style_bundle_of_zips(tmp_path):
    from melanoma_lab.data.presets import fetch
    from melanoma_lab.data.sources import load_catalog
    from tests.conftest import compose_config
    from tests.manifest_fixtures import write_ham10000

    source = write_ham10000(tmp_path / "source")
    parts = {n: _zip_files(tmp_path / f"HAM10000_images_part{n}.zip",  # images at the top level, like Dataverse
                           {p.name: p for p in (source / f"HAM10000_images_part_{n}").iterdir()}) for n in (1, 2)}
    bundle = _zip_files(tmp_path / "dataverse_files.zip", {"HAM10000_images_part1.zip": parts[1],
                                                           "HAM10000_images_part2.zip": parts[2],
                                                           "HAM10000_metadata.csv": source / "HAM10000_metadata.csv"})
    dest = fetch("ham10000", tmp_path / "data" / "ham10000", [bundle.as_uri()])  # a file:// URL: the download path
    catalog = load_catalog(compose_config(["dataset=ham10000", f"dataset.root={dest}"]).dataset)
    assert len(catalog.files) == len((source / "HAM10000_metadata.csv").read_text().splitlines()) - 1
    assert not catalog.unexpected and (dest / "SOURCE.json").is_file()
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["downloads.json", "ham10000"]  # no staging
    assert bundle.as_uri() in (tmp_path / "data" / "downloads.json").read_text()  # checked on the next fetch


def test_isic2019_from_its_three_files_and_a_missing_file_leaves_nothing(tmp_path, capsys):
    from melanoma_lab.data.sources import load_catalog
    from tests.conftest import compose_config
    from tests.manifest_fixtures import write_isic2019

    source = write_isic2019(tmp_path / "source")
    images = _zip_files(tmp_path / "ISIC_2019_Training_Input.zip",
                        {f"ISIC_2019_Training_Input/{p.name}": p
                         for p in (source / "ISIC_2019_Training_Input").iterdir()})
    truth, meta = source / "ISIC_2019_Training_GroundTruth.csv", source / "ISIC_2019_Training_Metadata.csv"
    dest = tmp_path / "data" / "isic2019"
    assert main(["--dataset", "isic2019", "--dest", str(dest), "--archive", str(images), "--archive", str(truth)]) == 1
    assert "lack ISIC_2019_Training_Metadata.csv" in capsys.readouterr().err
    assert not dest.exists() and list((tmp_path / "data").iterdir()) == []
    assert main(["--dataset", "isic2019", "--dest", str(dest), "--archive", str(images), "--archive", str(truth),
                 "--archive", meta.as_uri()]) == 0
    catalog = load_catalog(compose_config(["dataset=isic2019", f"dataset.root={dest}"]).dataset)
    assert "MEL" in catalog.classes and len(catalog.files) == len(truth.read_text().splitlines()) - 1
    assert main(["--dataset", "isic2019", "--dest", str(dest)]) == 0  # already there: nothing downloaded
    assert "nothing to do" in capsys.readouterr().out


@pytest.fixture
def served(tmp_path):
    """A folder served over HTTP on 127.0.0.1 (a stand-in for the dataset's host): (folder, base URL, the paths
    requested so far)."""
    import functools
    import http.server
    import threading

    folder = tmp_path / "served"
    folder.mkdir()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    handler = functools.partial(Handler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()
    server.server_close()


def test_a_download_is_checked_against_its_known_hash_and_a_wrong_one_leaves_nothing(served, archive, tmp_path):
    from melanoma_lab.data.archives import sha256

    folder, base, requests = served
    (folder / "isic.zip").write_bytes(archive.read_bytes())
    good = sha256(archive)
    dest = tmp_path / "data" / "isic9.zip"
    assert download(f"{base}/isic.zip", dest, known_hash=good) == dest and sha256(dest) == good
    assert download(f"{base}/isic.zip", dest, known_hash=good) == dest  # there and verified: not fetched again
    assert requests == ["/isic.zip"]
    wrong = tmp_path / "other" / "isic9.zip"
    with pytest.raises(ArchiveError, match="is not the file expected .* Nothing was kept"):
        download(f"{base}/isic.zip", wrong, known_hash="0" * 64)
    assert list(wrong.parent.iterdir()) == []  # no partial, no unverified file


def test_the_first_download_records_its_hash_and_a_changed_source_is_refused(served, archive, tmp_path, capsys):
    import json

    from melanoma_lab.data.archives import REGISTRY, sha256

    folder, base, _ = served
    (folder / "isic.zip").write_bytes(archive.read_bytes())
    dest = tmp_path / "data" / "isic9"
    assert main(["--url", f"{base}/isic.zip", "--dest", str(dest)]) == 0  # download, verify the layout, extract
    assert (dest / "Train").is_dir()
    recorded = json.loads((dest.parent / REGISTRY).read_text())
    assert recorded == {f"{base}/isic.zip": sha256(archive)}
    (folder / "isic.zip").write_bytes(archive.read_bytes() + b"tampered")  # the host now serves other bytes
    again = tmp_path / "data" / "isic9.zip"
    again.unlink()
    with pytest.raises(ArchiveError, match="not the file expected"):
        download(f"{base}/isic.zip", again)
    assert not again.exists() and json.loads((dest.parent / REGISTRY).read_text()) == recorded
