"""`raftkv status`: every node's role, term and indexes, and the members as the leader sees
them; --json prints the same data as one JSON object."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from raftkv.cli.common import PROG, Subparsers, client_parser, table, with_client
from raftkv.client import ServerStatus, WrongEndpoint
from raftkv.errors import RaftkvError

HEADERS = ["ENDPOINT", "ID", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "LAST"]


def add_parser(sub: Subparsers) -> None:
    p = client_parser(sub, "status", "show every node's role, term and indexes", cmd_status)
    p.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object: {"leader": ID or null, "nodes": [{"endpoint", "status" '
        '(its GET /v1/status) or "error"}, ...]}, every endpoint in order',
    )


def cmd_status(args: argparse.Namespace) -> int:
    statuses = with_client(args, lambda c: c.cluster_status())
    leader = current_leader(statuses)
    if args.json:
        print(json.dumps(status_json(statuses, leader)))
    else:
        print(status_text(statuses, leader))
    if not any(isinstance(st, ServerStatus) for st in statuses.values()):
        print(f"{PROG}: error: no node answered", file=sys.stderr)
        return 1
    return 0


def current_leader(statuses: dict[str, ServerStatus | RaftkvError]) -> ServerStatus | None:
    """The node that says it leads, in the highest term (an old leader may not know yet)."""
    leader: ServerStatus | None = None
    for st in statuses.values():
        if not isinstance(st, ServerStatus) or st.role != "leader":
            continue
        if leader is None or st.term > leader.term:
            leader = st
    return leader


def status_json(
    statuses: dict[str, ServerStatus | RaftkvError], leader: ServerStatus | None
) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = []
    for endpoint, st in statuses.items():
        if isinstance(st, ServerStatus):
            nodes.append({"endpoint": endpoint, "status": st.raw})
        else:
            nodes.append({"endpoint": endpoint, "error": str(st)})
    return {"leader": None if leader is None else leader.id, "nodes": nodes}


def status_text(
    statuses: dict[str, ServerStatus | RaftkvError], leader: ServerStatus | None
) -> str:
    rows: list[list[object]] = []
    problems: list[str] = []
    for endpoint, st in statuses.items():
        if isinstance(st, ServerStatus):
            last = [st.commit_index, st.applied_index, st.last_index]
            rows.append([endpoint, st.id, st.role, st.term, st.leader or "-", *last])
        else:
            rows.append(
                [endpoint, "-", "not raftkv" if isinstance(st, WrongEndpoint) else "unreachable"]
            )
            problems.append(f"  {endpoint}: {st}")
    lines = [table(HEADERS, rows), *problems]
    if leader is not None:
        lines.append(f"\nmembers, as the leader {leader.id} sees them:")
        members = [
            [
                m.id,
                m.role,
                "?" if m.match_index is None else m.match_index,
                "yes" if m.reachable else "NO",
            ]
            for m in leader.members
        ]
        lines.append(table(["ID", "ROLE", "MATCH", "REACHABLE"], members))
    elif any(isinstance(st, ServerStatus) for st in statuses.values()):
        lines.append(
            "\nno leader right now (an election may be in progress, or no quorum is reachable)"
        )
    return "\n".join(lines)
