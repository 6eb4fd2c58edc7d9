"""`raftkv cluster up|join|remove|down`: a local dev cluster (the engine: raftkv.devcluster).

Timeouts: up and join wait --leader-timeout seconds for a leader; remove gives the membership
change --timeout seconds; remove and down SIGKILL a node still running --kill-after seconds
after its SIGTERM."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from raftkv.cli.common import (
    Subparsers,
    add_deprecated_alias,
    add_timeout_option,
    nonnegative_float,
    positive_float,
)
from raftkv.devcluster.manage import UpOptions, down, join, remove, up
from raftkv.devcluster.topology import (
    DEFAULT_BASE_PORT,
    DEFAULT_DATA_DIR,
    HTTP_OFFSET,
    MAX_NODES,
)

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
    _leader_timeout(u)
    add_deprecated_alias(u, "--wait", "--leader-timeout", "leader_timeout", positive_float)
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
        "promote it: raftkv member promote nI --wait-caught-up 30.",
    )
    j.add_argument(
        "--data-dir",
        type=Path,
        default=Path(DEFAULT_DATA_DIR),
        metavar="DIR",
        help=f"cluster directory (default ./{DEFAULT_DATA_DIR})",
    )
    _leader_timeout(j)
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
    add_timeout_option(rm, suppress=True)
    _kill_after(rm)
    rm.set_defaults(func=cmd_remove)

    d = csub.add_parser(
        "down",
        help="stop the cluster's nodes (SIGTERM, then SIGKILL)",
        description="Stop every node of the cluster in DIR: SIGTERM, then SIGKILL after "
        "--kill-after seconds; removes the pid files and keeps the data.",
    )
    d.add_argument(
        "--data-dir",
        type=Path,
        default=Path(DEFAULT_DATA_DIR),
        metavar="DIR",
        help=f"cluster directory (default ./{DEFAULT_DATA_DIR})",
    )
    _kill_after(d)
    add_deprecated_alias(d, "--wait", "--kill-after", "kill_after", nonnegative_float)
    d.set_defaults(func=cmd_down)


def cmd_up(args: argparse.Namespace) -> int:
    opts = UpOptions(
        data_dir=args.data_dir,
        nodes=args.nodes,
        base_port=args.base_port,
        allow_fault_injection=args.allow_fault_injection,
        timeout=args.leader_timeout,
        snapshot_entries=args.snapshot_entries,
        wal_segment_mb=args.wal_segment_mb,
    )
    up(opts, sys.stdout, sys.stderr)
    return 0


def cmd_join(args: argparse.Namespace) -> int:
    join(args.data_dir, args.leader_timeout, sys.stdout, sys.stderr)
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    remove(args.data_dir, args.id, args.timeout, args.kill_after, sys.stdout)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    down(args.data_dir, args.kill_after, sys.stdout)
    return 0


def _leader_timeout(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--leader-timeout",
        type=positive_float,
        default=30.0,
        metavar="S",
        help="give up when no leader is known after S seconds (default: 30)",
    )


def _kill_after(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--kill-after",
        type=nonnegative_float,
        default=10.0,
        metavar="S",
        help="SIGKILL a node still running S seconds after its SIGTERM (default: 10)",
    )


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
