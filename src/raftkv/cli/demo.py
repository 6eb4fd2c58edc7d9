"""`raftkv demo`: start a local cluster and the live consensus demo page (raftkv.demo).

raftkv demo [--nodes 3] [--port 8080] [--data-dir DIR] [--slow FACTOR] [--no-browser]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from raftkv.cli.common import Subparsers, int_in
from raftkv.demo.runner import (
    DEFAULT_NODES,
    DEFAULT_PORT,
    DEFAULT_SLOW,
    HOST,
    MAX_NODES,
    DemoOptions,
    serve_demo,
)
from raftkv.demo.supervisor import DemoError


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "demo",
        help="start a local cluster and the live consensus demo page",
        description="Start N `raftkv serve` processes on 127.0.0.1 (fault injection on) and a "
        "web page that shows their Raft traffic live, with buttons to write, read, cut the "
        "network, crash nodes and move leadership. Ctrl-C stops everything.",
    )
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--nodes", type=int_in(1, MAX_NODES), default=DEFAULT_NODES, help="cluster size (3)"
    )
    p.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help=f"web page port on {HOST} ({DEFAULT_PORT}; 0 = any free port)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="keep the nodes' data here (reused by the next run); default: a temporary "
        "directory removed on exit",
    )
    p.add_argument(
        "--slow",
        type=_slow,
        default=DEFAULT_SLOW,
        metavar="FACTOR",
        help=f"slow motion: ticks and message delays times FACTOR ({DEFAULT_SLOW:g}; "
        "1 = full speed)",
    )
    p.add_argument("--no-browser", action="store_true", help="only print the URL")
    # Tests only: extra arguments for every `raftkv serve` (e.g. --node-arg=--no-fsync).
    p.add_argument("--node-arg", action="append", default=[], help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    opts = DemoOptions(
        nodes=args.nodes,
        port=args.port,
        data_dir=args.data_dir,
        slow=args.slow,
        open_browser=not args.no_browser,
        extra_node_args=tuple(getattr(args, "node_arg", None) or ()),
    )
    try:
        asyncio.run(serve_demo(opts, sys.stdout))
    except DemoError as e:
        print(f"raftkv demo: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _port(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"must be in 0..65535, got {n}")
    return n


def _slow(text: str) -> float:
    try:
        f = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 1.0 <= f <= 100.0:
        raise argparse.ArgumentTypeError(f"must be in 1..100, got {text}")
    return f
