"""`raftkv certs init|client` (the engine: raftkv.security.certs).

    raftkv certs init --dir DIR [--nodes n1,n2,n3 | --nodes 3] [--hosts H,...] [--user NAME=ROLE]
    raftkv certs client NAME --role read|write|admin --dir DIR

The security settings of `raftkv serve` (--tls-dir, --auth-tokens, limits) are in
raftkv.nodeconfig with all its other settings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from raftkv.cli.common import Subparsers
from raftkv.errors import BadRequest
from raftkv.security import certs


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "certs",
        help="make a cluster CA, node and client certificates, and tokens",
        description="Certificates for a TLS cluster, made with the `cryptography` library. "
        "Node certificates carry OU=node and the node id as CN; client certificates carry "
        "their role (read, write, admin) as OU.",
    )
    csub = p.add_subparsers(dest="certs_command", metavar="ACTION", required=True)
    i = csub.add_parser(
        "init",
        help="a new CA, a certificate per node, an admin client certificate and tokens",
        description="Write DIR/ca.pem and ca.key, DIR/<id>.pem and <id>.key per node, "
        "DIR/client-<name>.pem and .key per client, and DIR/tokens.txt (one admin, one write "
        "and one read token). Keys are written 0600. Nothing is overwritten without --force.",
    )
    i.add_argument("--dir", type=Path, required=True, help="where to write the files")
    i.add_argument(
        "--nodes",
        default="3",
        metavar="N|ID,...",
        help="a node count (n1..nN) or a list of node ids (default 3)",
    )
    i.add_argument(
        "--hosts",
        default=",".join(certs.DEFAULT_HOSTS),
        metavar="H,...",
        help="DNS names and IP addresses the nodes are reached at "
        f"(default {','.join(certs.DEFAULT_HOSTS)})",
    )
    i.add_argument(
        "--user",
        action="append",
        default=None,
        metavar="NAME=ROLE",
        help="a client certificate to make (repeatable; default admin=admin)",
    )
    i.add_argument("--no-tokens", action="store_true", help="do not write tokens.txt")
    i.add_argument("--days", type=int, default=certs.DEFAULT_DAYS, help="validity in days")
    i.add_argument("--force", action="store_true", help="replace existing files")
    i.set_defaults(func=cmd_init)

    c = csub.add_parser("client", help="one more client certificate signed by DIR's CA")
    c.add_argument("name")
    c.add_argument("--role", required=True, choices=certs.CLIENT_ROLES)
    c.add_argument("--dir", type=Path, required=True, help="the directory of `certs init`")
    c.add_argument("--days", type=int, default=certs.DEFAULT_DAYS, help="validity in days")
    c.set_defaults(func=cmd_client)


def node_ids(spec: str) -> list[str]:
    spec = spec.strip()
    if spec.isdigit():
        return [f"n{i}" for i in range(1, int(spec) + 1)]
    return [n.strip() for n in spec.split(",") if n.strip()]


def cmd_init(args: argparse.Namespace) -> int:
    clients: dict[str, str] = {}
    for item in args.user or ["admin=admin"]:
        name, eq, role = item.partition("=")
        if not eq:
            raise BadRequest(f"--user {item!r} must look like NAME=ROLE")
        clients[name.strip()] = role.strip()
    nodes = node_ids(args.nodes)
    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
    written = certs.init_dir(
        args.dir,
        nodes,
        hosts=hosts,
        clients=clients,
        tokens=not args.no_tokens,
        days=args.days,
        force=args.force,
    )
    for path in written:
        print(path)
    print(
        f"\nstart each node with: raftkv serve --id ID --tls-dir {args.dir} "
        + ("" if args.no_tokens else f"--auth-tokens {args.dir / certs.TOKENS_FILE} ")
        + "... (peer URLs https://)",
        file=sys.stderr,
    )
    return 0


def cmd_client(args: argparse.Namespace) -> int:
    for path in certs.issue_client(args.dir, args.name, args.role, days=args.days):
        print(path)
    return 0
