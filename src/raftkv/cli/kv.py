"""`raftkv put|get|delete|cas|watch`: keys and values.

A VALUE argument is taken as typed, except '-' (the value is stdin, read to its end, bytes as
they are) and '@FILE' (the file's bytes); --literal takes every VALUE as typed.
"""

from __future__ import annotations

import argparse
import json
import sys

from raftkv.cli.common import (
    PROG,
    VALUE_HELP,
    Subparsers,
    ValueReader,
    add_literal_option,
    client_parser,
    nonnegative_int,
    positive_int,
    show,
    with_client,
)
from raftkv.client import CONSISTENCIES, AsyncClient, Conflict


def add_parser(sub: Subparsers) -> None:
    p = client_parser(sub, "put", "set KEY to VALUE", cmd_put)
    p.add_argument("key")
    p.add_argument("value", help=f"the value: {VALUE_HELP}")
    add_literal_option(p)
    p.add_argument(
        "--prev-revision",
        type=nonnegative_int,
        metavar="R",
        help="only if the key's revision is R (0: only if the key does not exist)",
    )

    g = client_parser(sub, "get", "print KEY's value", cmd_get)
    g.add_argument("key")
    g.add_argument(
        "--consistency",
        choices=CONSISTENCIES,
        default="linearizable",
        help="linearizable (default): confirmed with a quorum; lease: the leader's lease; "
        "stale: whatever the node answering has",
    )
    g.add_argument("--revision", action="store_true", help="print the key's revision too")

    d = client_parser(sub, "delete", "delete KEY", cmd_delete)
    d.add_argument("key")

    c = client_parser(sub, "cas", "set KEY to NEW only if its value is EXPECTED", cmd_cas)
    c.add_argument("key")
    c.add_argument("expected", help=f"the value expected now: {VALUE_HELP}")
    c.add_argument("new", help=f"the new value: {VALUE_HELP}")
    add_literal_option(c)

    w = client_parser(sub, "watch", "print changes to keys under PREFIX until Ctrl-C", cmd_watch)
    w.add_argument(
        "prefix",
        nargs="*",
        default=[""],
        help="key prefix (default: every key); several: one watch each, on one stream",
    )
    w.add_argument("--from-revision", type=positive_int, metavar="R", help="replay from revision R")
    w.add_argument("--count", type=positive_int, metavar="N", help="exit after N events")
    w.add_argument("--json", action="store_true", help="one JSON object per event")


def cmd_put(args: argparse.Namespace) -> int:
    value = ValueReader(args.literal).read(args.value)
    try:
        result = with_client(
            args, lambda c: c.put(args.key, value, prev_revision=args.prev_revision)
        )
    except Conflict as e:
        now = "does not exist" if e.mod_revision == 0 else f"is at revision {e.mod_revision}"
        print(f"{PROG}: put refused: {args.key!r} {now} ({e})", file=sys.stderr)
        return 1
    print(f"OK (revision {result.revision})")
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    result = with_client(args, lambda c: c.get(args.key, consistency=args.consistency))
    if result is None:
        print(f"{PROG}: key {args.key!r} not found", file=sys.stderr)
        return 1
    out = sys.stdout.buffer
    out.write(result.value + b"\n")
    if args.revision:
        out.write(f"revision {result.revision}\n".encode())
    out.flush()
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    result = with_client(args, lambda c: c.delete(args.key))
    if result.deleted:
        print(f"deleted {args.key!r} (revision {result.revision})")
    else:
        print(f"{args.key!r} did not exist")
    return 0


def cmd_cas(args: argparse.Namespace) -> int:
    values = ValueReader(args.literal)
    expected, new = values.read(args.expected), values.read(args.new)
    result = with_client(args, lambda c: c.cas(args.key, expected, new))
    if not result.succeeded:
        now = "does not exist" if result.current is None else f"is {show(result.current)}"
        print(
            f"{PROG}: cas failed: {args.key!r} {now}, not {show(expected)}; nothing changed",
            file=sys.stderr,
        )
        return 1
    print(f"OK (revision {result.revision})")
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    async def job(client: AsyncClient) -> int:
        seen = 0
        prefixes: list[str] = args.prefix
        async for ev in client.watch(prefixes, from_revision=args.from_revision):
            # With several prefixes, say which watch matched (an event may match several).
            tag = f" ({prefixes[ev.watch]!r})" if len(prefixes) > 1 else ""
            if args.json:
                line = json.dumps(ev.raw, separators=(",", ":"))
            elif ev.type == "delete":
                line = f"[{ev.revision}]{tag} delete {ev.key}"
            else:
                value = ev.value.decode("utf-8", "replace")
                line = f"[{ev.revision}]{tag} put {ev.key} = {value}"
            print(line, flush=True)
            seen += 1
            if args.count is not None and seen >= args.count:
                break
        return 0

    try:
        return with_client(args, job)
    except KeyboardInterrupt:
        return 0  # Ctrl-C is how a watch normally ends
