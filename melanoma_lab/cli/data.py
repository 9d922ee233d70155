"""`melanoma-lab data`: download a dataset (isic9, ham10000, isic2019), verify it and extract it atomically."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from melanoma_lab.data import download as room
from melanoma_lab.data.archives import ArchiveError, download
from melanoma_lab.data.download import DEFAULT_URL, extract


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=room.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="isic9", help="isic9 (default), ham10000 or isic2019")
    parser.add_argument("--dest", type=Path, help="default: data/<dataset>")
    parser.add_argument("--archive", action="append", help="use this zip (for presets: files or URLs, repeatable) "
                        "instead of downloading")
    parser.add_argument("--url", default=DEFAULT_URL)
    args = parser.parse_args(argv)
    args.dest = args.dest or Path("data") / args.dataset
    if args.dataset != "isic9":
        from melanoma_lab.data.presets import fetch_main

        return fetch_main(args.dataset, args.dest, args.archive)
    if (args.dest / "Train").is_dir():
        print(f"{args.dest} already has Train/: nothing to do")
        return 0
    try:
        archive = Path(args.archive[0]) if args.archive else download(args.url, args.dest.parent / "isic9.zip")
        print(f"extracted to {extract(archive, args.dest)}")
    except (ConnectionError, ArchiveError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
