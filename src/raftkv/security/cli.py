"""`raftkv certs init|client`, and the security options of `raftkv serve`.

    raftkv certs init --dir DIR [--nodes n1,n2,n3 | --nodes 3] [--hosts H,...] [--user NAME=ROLE]
    raftkv certs client NAME --role read|write|admin --dir DIR

serve: --tls-dir DIR (DIR/<id>.pem, DIR/<id>.key, DIR/ca.pem) or --cert/--key/--ca; --auth-tokens
FILE; limits --max-connections, --max-streams, --max-peer-connections, --idle-timeout,
--read-timeout, --handshake-timeout, --max-key-size, --max-value-size, --max-frame-size.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raftkv.errors import BadRequest
from raftkv.security import certs
from raftkv.security.auth import TokenTable
from raftkv.security.config import SecurityConfig
from raftkv.security.tls import TlsFiles

if TYPE_CHECKING:
    from raftkv.cli import Subparsers


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


# --- raftkv serve ------------------------------------------------------------------------


def add_serve_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("security (TLS and authentication are off unless asked for)")
    g.add_argument(
        "--tls-dir",
        type=Path,
        metavar="DIR",
        help="TLS for peers (mutual) and HTTP with DIR/<id>.pem, DIR/<id>.key, DIR/ca.pem "
        "(from `raftkv certs init`); turns authentication on",
    )
    g.add_argument("--cert", type=Path, metavar="FILE", help="this node's certificate (PEM)")
    g.add_argument("--key", type=Path, metavar="FILE", help="its private key (PEM)")
    g.add_argument("--ca", type=Path, metavar="FILE", help="the cluster CA certificate (PEM)")
    g.add_argument(
        "--auth-tokens",
        type=Path,
        metavar="FILE",
        help='bearer tokens, lines of "TOKEN ROLE NAME"; turns authentication on',
    )
    lim = p.add_argument_group("limits")
    d = SecurityConfig()
    lim.add_argument(
        "--max-connections",
        type=int,
        default=d.max_http_connections,
        metavar="N",
        help=f"client HTTP connections at once ({d.max_http_connections}); SSE streams, "
        "requests forwarded by peers and /healthz do not count",
    )
    lim.add_argument(
        "--max-streams",
        type=int,
        default=d.max_streams,
        metavar="N",
        help=f"SSE streams at once: GET /v1/watch and /v1/events ({d.max_streams})",
    )
    lim.add_argument(
        "--max-peer-connections", type=int, default=d.max_peer_connections, metavar="N"
    )
    lim.add_argument(
        "--idle-timeout",
        type=float,
        default=d.idle_timeout_s,
        metavar="S",
        help=f"close an HTTP connection idle for S seconds ({d.idle_timeout_s:g})",
    )
    lim.add_argument(
        "--read-timeout",
        type=float,
        default=d.read_timeout_s,
        metavar="S",
        help=f"close a connection whose request takes over S seconds to arrive "
        f"({d.read_timeout_s:g})",
    )
    lim.add_argument("--handshake-timeout", type=float, default=d.handshake_timeout_s, metavar="S")
    lim.add_argument("--max-key-size", type=int, metavar="BYTES")
    lim.add_argument("--max-value-size", type=int, metavar="BYTES")
    lim.add_argument("--max-frame-size", type=int, metavar="BYTES", help="peer frame payload")


def security_from_args(args: argparse.Namespace) -> SecurityConfig:
    """BadRequest (a usage error) for an incomplete or unreadable TLS or token setup."""
    tls: TlsFiles | None = None
    explicit = (args.cert, args.key, args.ca)
    if any(explicit):
        if not all(explicit):
            raise BadRequest("--cert, --key and --ca go together")
        tls = TlsFiles(args.cert, args.key, args.ca)
    elif args.tls_dir is not None:
        tls = TlsFiles.from_dir(args.tls_dir, args.id)
    if tls is not None:
        tls.check()
    tokens = TokenTable.load(args.auth_tokens) if args.auth_tokens is not None else None
    return SecurityConfig(
        tls=tls,
        tokens=tokens,
        max_http_connections=args.max_connections,
        max_streams=args.max_streams,
        max_peer_connections=args.max_peer_connections,
        idle_timeout_s=args.idle_timeout,
        read_timeout_s=args.read_timeout,
        handshake_timeout_s=args.handshake_timeout,
    )


def size_limits_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """NodeSettings keyword arguments for the size limits given on the command line."""
    out: dict[str, Any] = {}
    for flag, name in (
        ("max_key_size", "max_key_size"),
        ("max_value_size", "max_value_size"),
        ("max_frame_size", "max_frame_size"),
    ):
        value = getattr(args, flag)
        if value is not None:
            out[name] = value
    return out
