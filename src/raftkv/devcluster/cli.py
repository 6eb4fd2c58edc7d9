"""`raftkv cluster up|down`: the subcommand's parser and handlers."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from raftkv.devcluster.manage import UpOptions, down, join, remove, up
from raftkv.devcluster.topology import DEFAULT_BASE_PORT, HTTP_OFFSET, MAX_NODES

if TYPE_CHECKING:
    from raftkv.cli import Subparsers

DEFAULT_DATA_DIR = "raftkv-data"

PORTS_HELP = (
    f"Ports: with base port P (default {DEFAULT_BASE_PORT}), node nI listens for Raft on P+I-1 "
    f"and serves HTTP on P+{HTTP_OFFSET}+I-1; by default n1 = raft 7001 / http 8001, "
    "n2 = 7002 / 8002, n3 = 7003 / 8003."
)


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "cluster",
        help="start or stop a local dev cluster",
        description="A local dev cluster: N `raftkv serve` processes on 127.0.0.1, detached, "
        "with data, node.log and node.pid under DIR/<id>/. " + PORTS_HELP,
    )
    csub = p.add_subparsers(dest="cluster_command", metavar="ACTION", required=True)

    u = csub.add_parser(
        "up",
        help="start the cluster (or restart the one in DIR) and wait for a leader",
        description="Start N nodes detached, wait until a leader is elected, print each "
        "node's HTTP endpoint and the RAFTKV_ENDPOINTS export line. On a data dir that "
        "already holds a cluster, restart the same nodes with their data and ports. " + PORTS_HELP,
    )
    u.add_argument(
        "--nodes", type=_nodes, help="number of nodes (default 3; a restart keeps its own)"
    )
    u.add_argument(
        "--data-dir",
        type=Path,
        default=Path(DEFAULT_DATA_DIR),
        metavar="DIR",
        help=f"cluster directory (default ./{DEFAULT_DATA_DIR})",
    )
    u.add_argument(
        "--base-port",
        type=_port,
        metavar="P",
        help=f"first Raft port (default {DEFAULT_BASE_PORT}); HTTP is P+{HTTP_OFFSET}",
    )
    u.add_argument(
        "--allow-fault-injection",
        action="store_true",
        help="pass --allow-fault-injection to every node (POST /v1/debug/net)",
    )
    u.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="S",
        help="give up waiting for a leader after S seconds (30)",
    )
    u.add_argument(
        "--snapshot-entries",
        type=int,
        metavar="N",
        help="nodes compact their log every N applied entries (default: the node's, 10000)",
    )
    u.add_argument(
        "--wal-segment-mb",
        type=int,
        metavar="N",
        help="nodes use N MiB WAL segments, each reserved whole on disk (default: the "
        "node's, 64; every new node needs N MiB free: use less on a small disk)",
    )
    u.set_defaults(func=cmd_up)

    j = csub.add_parser(
        "join",
        help="start one more node that joins the running cluster as a learner",
        description="Start node nI (the next id, on ports P+I-1 and P+1000+I-1) with "
        "`raftkv serve --join`: the cluster adds it as a learner and catches it up. Then "
        "promote it: raftkv member promote nI --wait 30.",
    )
    j.add_argument(
        "--data-dir",
        type=Path,
        default=Path(DEFAULT_DATA_DIR),
        metavar="DIR",
        help=f"cluster directory (default ./{DEFAULT_DATA_DIR})",
    )
    j.add_argument(
        "--wait", type=float, default=30.0, metavar="S", help="give up after S seconds (30)"
    )
    j.set_defaults(func=cmd_join)

    rm = csub.add_parser(
        "remove",
        help="remove a node from the cluster, stop it and forget it",
        description="`raftkv member remove ID` through the other nodes, stop ID's process if "
        "it runs, and drop it from DIR/cluster.json (its data directory is kept; the id is "
        "never given out again). Works for a dead node, and for the leader.",
    )
    rm.add_argument("id")
    rm.add_argument(
        "--data-dir",
        type=Path,
        default=Path(DEFAULT_DATA_DIR),
        metavar="DIR",
        help=f"cluster directory (default ./{DEFAULT_DATA_DIR})",
    )
    rm.add_argument(
        "--wait", type=float, default=10.0, metavar="S", help="give up after S seconds (10)"
    )
    rm.set_defaults(func=cmd_remove)

    d = csub.add_parser(
        "down",
        help="stop the cluster's nodes (SIGTERM, then SIGKILL)",
        description="Stop every node of the cluster in DIR: SIGTERM, then SIGKILL after "
        "--wait seconds; removes the pid files and keeps the data.",
    )
    d.add_argument(
        "--data-dir",
        type=Path,
        default=Path(DEFAULT_DATA_DIR),
        metavar="DIR",
        help=f"cluster directory (default ./{DEFAULT_DATA_DIR})",
    )
    d.add_argument(
        "--wait",
        type=float,
        default=10.0,
        metavar="S",
        help="SIGKILL nodes still running S seconds after SIGTERM (10)",
    )
    d.set_defaults(func=cmd_down)


def cmd_up(args: argparse.Namespace) -> int:
    opts = UpOptions(
        data_dir=args.data_dir,
        nodes=args.nodes,
        base_port=args.base_port,
        allow_fault_injection=args.allow_fault_injection,
        timeout=args.wait,
        snapshot_entries=args.snapshot_entries,
        wal_segment_mb=args.wal_segment_mb,
    )
    up(opts, sys.stdout, sys.stderr)
    return 0


def cmd_join(args: argparse.Namespace) -> int:
    join(args.data_dir, args.wait, sys.stdout, sys.stderr)
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    remove(args.data_dir, args.id, args.wait, sys.stdout)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    down(args.data_dir, args.wait, sys.stdout)
    return 0


def _nodes(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 1 <= n <= MAX_NODES:
        raise argparse.ArgumentTypeError(f"must be in 1..{MAX_NODES}, got {n}")
    return n


def _port(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1024 <= n <= 65535 - HTTP_OFFSET - MAX_NODES:
        raise argparse.ArgumentTypeError(f"must be in 1024..{65535 - HTTP_OFFSET - MAX_NODES}")
    return n
