"""`raftkv faultfs` (also `python -m raftkv.faultfs`, as FaultMount starts it): mount a faultfs,
serve its control socket, unmount on SIGTERM or fusermount3 -u."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from raftkv.cli.common import Subparsers

HELP = "mount a FUSE file system that forgets unsynced writes (power-cut testing)"


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("mountpoint", type=Path, help="an existing empty directory")
    p.add_argument("--backing", type=Path, required=True, help="where durable data lives")
    p.add_argument("--control", type=Path, required=True, help="the control unix socket")
    p.add_argument("--seed", type=int, default=0, help="seed of the torn-write lengths (0)")


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("faultfs", help=HELP, description=HELP)
    _arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        from raftkv.faultfs import control, fuseops  # noqa: PLC0415 (loads libfuse3)
        from raftkv.faultfs.state import FaultState  # noqa: PLC0415
    except (ImportError, OSError) as e:  # mfusepy raises if libfuse3 is missing
        print(
            f"raftkv faultfs: cannot load libfuse3 ({e}); install Debian's fuse3", file=sys.stderr
        )
        return 1
    if not args.mountpoint.is_dir():
        print(f"raftkv faultfs: {args.mountpoint} is not a directory", file=sys.stderr)
        return 2
    args.backing.mkdir(parents=True, exist_ok=True)
    state = FaultState(args.backing, seed=args.seed)
    ops = fuseops.FaultOps(state)
    control.serve(state, args.control, lambda: ops.mounted)
    fuseops.mount(state, ops, str(args.mountpoint))
    return 0
