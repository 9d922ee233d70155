"""Archive primitives shared by every dataset download: stream a URL to a file (renamed when complete) and
extract a zip without letting a member escape its folder."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm


class ArchiveError(RuntimeError):
    """The archive is corrupt or does not hold the expected Train/<class>/ layout."""


def download(url: str, dest: Path, timeout: float = 60.0, what: str = "ISIC archive") -> Path:
    """Stream ``url`` to ``dest`` (via a temporary file, renamed when complete)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(dest.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, partial.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {what}") as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        partial.unlink(missing_ok=True)
        raise ConnectionError(
            f"could not download {url}: {error}\nNo internet here? Fetch the archive elsewhere and run "
            "`python -m melanoma_lab.data.download --archive FILE.zip`, or point dataset.root at an extracted "
            "copy, or use dataset=synthetic.") from error
    os.replace(partial, dest)
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
