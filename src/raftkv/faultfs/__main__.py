"""python -m raftkv.faultfs MOUNTPOINT --backing DIR --control SOCK [--seed N]"""

from raftkv.faultfs.cli import main

raise SystemExit(main())
