"""`raftkv leader transfer [ID]`: hand leadership over."""

from __future__ import annotations

import argparse

from raftkv.cli.common import Subparsers, client_parser, with_client


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("leader", help="leadership operations")
    lsub = p.add_subparsers(dest="leader_command", metavar="ACTION", required=True)
    t = client_parser(lsub, "transfer", "hand leadership to node ID", cmd_transfer)
    t.add_argument("id", nargs="?", help="target node (default: the most caught-up follower)")


def cmd_transfer(args: argparse.Namespace) -> int:
    leader = with_client(args, lambda c: c.transfer_leader(args.id))
    print(f"leader is now {leader}")
    return 0
