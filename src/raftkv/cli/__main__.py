"""`python -m raftkv.cli ...`: the same as `raftkv ...` (launchers start nodes this way)."""

from raftkv.cli import main

raise SystemExit(main())
