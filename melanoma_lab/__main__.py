"""``python -m melanoma_lab <command> ...``: the same command line as ``melanoma-lab`` (:mod:`melanoma_lab.cli`)."""

import sys

from melanoma_lab.cli import main

if __name__ == "__main__":
    sys.exit(main())
