"""`raftkv member list|add|remove|promote`: the cluster's membership (single-server changes).

Growing the cluster: `member add ID HOST:PORT HTTP_URL` makes ID a learner (or start the new
node with `raftkv serve --join URLS`, which does that itself), the leader catches it up, then
`member promote ID --wait-caught-up 30` makes it a voter once it has caught up. Shrinking it:
`member remove ID` (the leader too: it steps down once its removal is committed).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from typing import Any

from raftkv.cli.common import (
    PROG,
    Subparsers,
    add_deprecated_alias,
    client_parser,
    nonnegative_float,
    table,
    with_client,
)
from raftkv.client import AsyncClient, Conflict, Member

PROMOTE_POLL_S = 0.5


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "member",
        help="list or change the cluster's members",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    msub = p.add_subparsers(dest="member_command", metavar="ACTION", required=True)
    ls = client_parser(msub, "list", "list the members, as the leader sees them", cmd_list)
    _json_flag(ls)
    add = client_parser(msub, "add", "add a node as a learner", cmd_add)
    add.add_argument("id", help="the new node's id, e.g. n4")
    add.add_argument("raft_address", metavar="HOST:PORT", help="its Raft peer address")
    add.add_argument("http_url", metavar="HTTP_URL", help="its HTTP URL, e.g. http://host:8004")
    _json_flag(add)
    rm = client_parser(msub, "remove", "remove a member (the leader too)", cmd_remove)
    rm.add_argument("id")
    _json_flag(rm)
    pr = client_parser(msub, "promote", "make a caught-up learner a voter", cmd_promote)
    pr.add_argument("id")
    pr.add_argument(
        "--wait-caught-up",
        type=nonnegative_float,
        default=0.0,
        metavar="S",
        help="while the learner is still catching up (409 not_caught_up), retry for up to S "
        "seconds (default: 0, fail at once)",
    )
    add_deprecated_alias(pr, "--wait", "--wait-caught-up", "wait_caught_up", nonnegative_float)
    _json_flag(pr)


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the answer as one JSON object")


def cmd_list(args: argparse.Namespace) -> int:
    members = with_client(args, lambda c: c.members())
    if args.json:
        print(json.dumps({"members": [dataclasses.asdict(m) for m in members]}))
        return 0
    print(members_table(members))
    return 0


def members_table(members: list[Member]) -> str:
    rows = [
        [
            m.id,
            "voter" if m.voter else "learner",
            m.raft_address or "?",
            m.http_url or "?",
            "-" if m.match_index is None else m.match_index,
            "-" if m.caught_up is None else ("yes" if m.caught_up else "no"),
        ]
        for m in members
    ]
    return table(["ID", "ROLE", "RAFT", "HTTP", "MATCH", "CAUGHT-UP"], rows)


def cmd_add(args: argparse.Namespace) -> int:
    doc = with_client(args, lambda c: c.add_member(args.id, args.raft_address, args.http_url))
    return _report(args, doc, f"added {args.id} as a learner")


def cmd_remove(args: argparse.Namespace) -> int:
    doc = with_client(args, lambda c: c.remove_member(args.id))
    return _report(args, doc, f"removed {args.id}")


def cmd_promote(args: argparse.Namespace) -> int:
    async def job(client: AsyncClient) -> Any:
        deadline = time.monotonic() + args.wait_caught_up
        while True:
            try:
                return await client.promote_member(args.id)
            except Conflict as e:  # 409 not_caught_up: the learner still lags
                if time.monotonic() + PROMOTE_POLL_S > deadline:
                    waited = args.wait_caught_up
                    raise Conflict(f"{e} (gave up after --wait-caught-up {waited:g}s)") from None
                await asyncio.sleep(PROMOTE_POLL_S)

    try:
        doc = with_client(args, job)
    except Conflict as e:
        print(f"{PROG}: promote refused: {e}", file=sys.stderr)
        return 1
    return _report(args, doc, f"promoted {args.id} to voter")


def _report(args: argparse.Namespace, doc: Any, done: str) -> int:
    if args.json:
        print(json.dumps(doc))
        return 0
    if isinstance(doc, dict) and doc.get("already"):
        print(f"nothing to do: {doc.get('message', done)}")
    else:
        index = doc.get("index") if isinstance(doc, dict) else None
        print(done + (f" (configuration entry {index})" if index else ""))
    if isinstance(doc, dict) and isinstance(doc.get("members"), list):
        members = [
            Member(
                str(m.get("id")),
                bool(m.get("voter")),
                str(m.get("raft_address", "")),
                str(m.get("http_url", "")),
                m.get("match_index"),
                m.get("caught_up"),
            )
            for m in doc["members"]
            if isinstance(m, dict)
        ]
        print(members_table(members))
    return 0
