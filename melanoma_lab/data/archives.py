"""Archive primitives shared by every dataset download: fetch a URL to a file, verified by sha256 (pooch: retries,
a progress bar, the file renamed into place only when complete and verified), and extract a zip without letting a
member escape its folder.

A download is checked against a known sha256: the one a preset publishes, else the one recorded the first time
that URL was downloaded (``downloads.json`` beside the file: trust on first use, checked on every later download).
A mismatch is an error and leaves nothing behind."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

REGISTRY = "downloads.json"  # url -> sha256 of what it served, in the folder of the downloaded files
RETRIES = 3


class ArchiveError(RuntimeError):
    """The archive is corrupt, not what was expected (hash), or does not hold the expected layout."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def recorded_hashes(folder: Path) -> dict[str, str]:
    path = folder / REGISTRY
    return json.loads(path.read_text()) if path.is_file() else {}


def _record(folder: Path, url: str, digest: str) -> None:
    hashes = recorded_hashes(folder) | {url: digest}
    partial = folder / f".{REGISTRY}.part"
    partial.write_text(json.dumps(hashes, indent=2, sort_keys=True))
    os.replace(partial, folder / REGISTRY)


def download(url: str, dest: Path, timeout: float = 60.0, what: str = "ISIC archive",
             known_hash: str | None = None, registry: Path | None = None) -> Path:
    """Fetch ``url`` to ``dest`` and check its sha256 against ``known_hash`` (a preset's published hash), or the
    hash recorded for ``url`` by an earlier download (in ``registry``/downloads.json, default: ``dest``'s folder;
    recorded now if there is none). A file
    already at ``dest`` with the expected hash is kept (not fetched again). A ``file://`` URL (a local mirror) is
    copied the same way."""
    import pooch
    import requests

    dest.parent.mkdir(parents=True, exist_ok=True)
    registry = registry or dest.parent
    expected = known_hash or recorded_hashes(registry).get(url)
    if expected is None:
        dest.unlink(missing_ok=True)  # nothing to check a file already there against: fetch it again
    try:
        if urlparse(url).scheme == "file":
            if not (dest.is_file() and sha256(dest) == expected):
                partial = dest.with_name(dest.name + ".part")
                shutil.copyfile(url2pathname(urlparse(url).path), partial)
                if expected and sha256(partial) != expected:
                    partial.unlink()
                    raise ValueError(f"SHA256 hash of the file does not match the known hash {expected}")
                os.replace(partial, dest)
        else:
            fetcher = pooch.create(path=dest.parent, base_url="", registry={dest.name: expected and
                                                                               f"sha256:{expected}"},
                                   urls={dest.name: url}, retry_if_failed=RETRIES)
            fetcher.fetch(dest.name, progressbar=True,
                          downloader=pooch.HTTPDownloader(progressbar=True, timeout=timeout))
    except ValueError as error:
        if "hash" not in str(error).lower():
            raise
        raise ArchiveError(f"{what} from {url} is not the file expected (sha256 {expected}): {error}. Nothing was "
                           "kept. If the source changed on purpose, delete its entry in "
                           f"{registry / REGISTRY}; otherwise the download is corrupt or tampered with") from None
    except (requests.exceptions.RequestException, OSError) as error:
        raise ConnectionError(
            f"could not download {url}: {error}\nNo internet here? Fetch the archive elsewhere and run "
            "`melanoma-lab data --archive FILE.zip`, or point dataset.root at an extracted "
            "copy, or use dataset=synthetic.") from error
    if expected is None:
        _record(registry, url, sha256(dest))
    return dest


def unzip(archive: Path, target: Path) -> None:
    """Extract every member of ``archive`` under ``target``, refusing members that would land outside it."""
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                if not (target / member.filename).resolve().is_relative_to(target.resolve()):
                    raise ArchiveError(f"{archive}: member {member.filename} escapes the extraction folder")
                zf.extract(member, target)
    except zipfile.BadZipFile as error:
        raise ArchiveError(f"{archive} is not a zip archive: {error}") from error
