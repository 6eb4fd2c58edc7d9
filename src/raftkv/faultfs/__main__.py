"""python -m raftkv.faultfs MOUNTPOINT --backing DIR --control SOCK [--seed N]: the same as
`raftkv faultfs ...` (raftkv.cli.faultfs)."""

import sys

from raftkv.cli import main

raise SystemExit(main(["faultfs", *sys.argv[1:]]))
