"""`python -m raftkv.demo ...`: the same as `raftkv demo ...`."""

from __future__ import annotations

import sys

from raftkv.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["demo", *sys.argv[1:]]))
