"""`melanoma-lab check-lock LOCK`: does this environment hold exactly the versions of its lock file?"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from melanoma_lab.errors import UserError
from melanoma_lab.tracking import lockfile as room
from melanoma_lab.tracking.lockfile import INSTALLED_LOCK, check, lock_pins


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=room.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lock", nargs="?", type=Path, default=INSTALLED_LOCK)
    lock = parser.parse_args(argv).lock
    try:
        problems = check(lock)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"{lock}: {problem}", file=sys.stderr)
    if not problems:
        print(f"environment matches {lock} ({len(lock_pins(lock.read_text()))} pinned packages)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
