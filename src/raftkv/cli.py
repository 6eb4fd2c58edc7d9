"""The `raftkv` command.

Every subcommand is added by one function `add_parser(subparsers)` that builds its parser and
sets `func` (Namespace -> exit code). COMMANDS lists them; adding a command is one line there,
either the function itself or "module:function" (imported only when the parser is built).

Exit codes: 0 success, 1 failure (one line on stderr, never a traceback for an expected
error), 2 usage error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

from raftkv.client import (
    CONSISTENCIES,
    ENV_VAR,
    AsyncClient,
    Conflict,
    Credentials,
    NodeStatus,
    parse_endpoints,
)
from raftkv.client.credentials import read_token_file
from raftkv.devcluster import load_topology
from raftkv.devcluster.cli import DEFAULT_DATA_DIR
from raftkv.errors import BadRequest, RaftkvError

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
AddParser: TypeAlias = Callable[[Subparsers], None]
Handler: TypeAlias = Callable[[argparse.Namespace], int]
_T = TypeVar("_T")

PROG = "raftkv"


class UsageError(Exception):
    """Bad command-line input found after parsing: exit status 2."""


# --- the registry -------------------------------------------------------------------------


def commands() -> list[AddParser | str]:
    """One entry per subcommand, in --help order."""
    return [
        "raftkv.demo:add_parser",
        add_serve,
        "raftkv.devcluster.cli:add_parser",
        add_put,
        add_get,
        add_delete,
        add_cas,
        add_watch,
        add_status,
        "raftkv.cli_member:add_parser",
        add_leader,
        add_bench,
        "raftkv.cli_snapshot:add_parser",
        "raftkv.simcmd:add_parser",
        "raftkv.chaos.cli:add_parser",
        "raftkv.faultfs.cli:add_parser",
        "raftkv.security.cli:add_parser",
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="raftkv: a Raft-replicated key-value store.",
        epilog=(
            f"Endpoints: --endpoints, else ${ENV_VAR}, else the cluster in ./{DEFAULT_DATA_DIR} "
            "(made by `raftkv cluster up`). Run `raftkv COMMAND --help` for details."
        ),
    )
    _add_client_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for entry in commands():
        _resolve(entry)(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # usage errors exit with status 2 here
    handler: Handler = args.func
    try:
        return handler(args)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `raftkv status | head -1`: not an error worth a message
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except RaftkvError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"{PROG}: error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1


def _resolve(entry: AddParser | str) -> AddParser:
    if not isinstance(entry, str):
        return entry
    module, _, name = entry.partition(":")
    fn: AddParser = getattr(importlib.import_module(module), name)
    return fn


# --- shared helpers -------------------------------------------------------------------------


def _add_client_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """--endpoints/--timeout, accepted before and after the subcommand."""
    default: Any = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--endpoints",
        default=default,
        metavar="URLS",
        help=f"comma-separated HTTP base URLs of the nodes (default: ${ENV_VAR})",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=argparse.SUPPRESS if suppress else 10.0,
        metavar="S",
        help="give up on a request after S seconds, retries included (default: 10)",
    )
    for flag, env, what in (
        ("--cacert", "RAFTKV_CACERT", "CA file to verify https endpoints with"),
        ("--client-cert", "RAFTKV_CLIENT_CERT", "client certificate (PEM) to present"),
        ("--client-key", "RAFTKV_CLIENT_KEY", "the client certificate's key"),
        ("--token-file", "RAFTKV_TOKEN_FILE", "file holding a bearer token (or $RAFTKV_TOKEN)"),
    ):
        parser.add_argument(
            flag, type=Path, default=default, metavar="FILE", help=f"{what} (default: ${env})"
        )


def client_parser(
    sub: Subparsers, name: str, help: str, handler: Handler
) -> argparse.ArgumentParser:
    """A subcommand that talks to the cluster: takes --endpoints and --timeout too."""
    p = sub.add_parser(name, help=help, description=help)
    _add_client_options(p, suppress=True)
    p.set_defaults(func=handler)
    return p


def endpoints_of(args: argparse.Namespace) -> list[str]:
    try:
        if args.endpoints:
            return parse_endpoints(args.endpoints)
        env = os.environ.get(ENV_VAR, "").strip()
        if env:
            return parse_endpoints(env)
    except BadRequest as e:
        raise UsageError(str(e)) from None
    topo = load_topology(Path(DEFAULT_DATA_DIR))
    if topo is not None:
        return topo.endpoints
    raise UsageError(
        f"no endpoints: pass --endpoints URL,... or set {ENV_VAR} "
        "(`raftkv cluster up` prints the export line)"
    )


def with_client(args: argparse.Namespace, job: Callable[[AsyncClient], Awaitable[_T]]) -> _T:
    """Run job(client) on a fresh event loop with a client for args' endpoints."""
    endpoints = endpoints_of(args)

    async def go() -> _T:
        async with AsyncClient(
            endpoints, timeout=args.timeout, credentials=credentials_of(args)
        ) as client:
            return await job(client)

    return asyncio.run(go())


def credentials_of(args: argparse.Namespace) -> Credentials:
    """Token and TLS files from the command line (unset ones come from the environment)."""
    token_file = getattr(args, "token_file", None)
    try:
        return Credentials(
            token=read_token_file(token_file) if token_file is not None else None,
            ca=getattr(args, "cacert", None),
            cert=getattr(args, "client_cert", None),
            key=getattr(args, "client_key", None),
        )
    except BadRequest as e:
        raise UsageError(str(e)) from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _arg_bytes(text: str) -> bytes:
    """A command-line value as the bytes the user typed (undecodable bytes survive)."""
    return os.fsencode(text)


def _show(value: bytes) -> str:
    return repr(value.decode("utf-8", "backslashreplace"))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [list(headers), *([str(c) for c in row] for row in rows)]
    widths = [max(len(r[i]) for r in cells if i < len(r)) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in cells]
    return "\n".join(lines)


# --- serve ----------------------------------------------------------------------------------


def add_serve(sub: Subparsers) -> None:
    p = sub.add_parser(
        "serve",
        help="run one node in the foreground",
        description="Run one raftkv node until SIGTERM or Ctrl-C. Logs go to stderr.",
    )
    p.add_argument("--id", required=True, help="this node's id, e.g. n1")
    p.add_argument("--data-dir", required=True, type=Path, help="where this node keeps its data")
    p.add_argument("--listen", required=True, metavar="HOST:PORT", help="Raft peer address")
    p.add_argument("--http", required=True, metavar="HOST:PORT", help="HTTP API address")
    p.add_argument(
        "--peers",
        metavar="ID=HOST:PORT@HTTP,...",
        help="every member, this node included, e.g. "
        "n1=127.0.0.1:7001@http://127.0.0.1:8001,n2=... (default: this node alone)",
    )
    p.add_argument("--cluster-id", default="raftkv", help="refuse peers of another cluster")
    p.add_argument(
        "--allow-fault-injection",
        action="store_true",
        help="enable POST /v1/debug/net (demo and chaos tests only)",
    )
    p.add_argument("--tick-ms", type=_positive_float, default=50.0, help="Raft tick (50)")
    p.add_argument(
        "--election-ticks", type=_positive_int, default=10, help="election timeout in ticks (10)"
    )
    p.add_argument("--slow", type=_positive_float, default=1.0, help="slow-motion factor (1)")
    p.add_argument(
        "--request-timeout",
        type=_positive_float,
        default=5.0,
        metavar="S",
        help="answer 504 after S seconds (5)",
    )
    p.add_argument(
        "--join",
        metavar="URLS",
        help="join a running cluster (comma-separated HTTP URLs of its nodes) as a learner: "
        "a new, empty --data-dir only; ignored once the node has joined",
    )
    p.add_argument(
        "--snapshot-entries",
        type=_nonnegative_int,
        default=10_000,
        metavar="N",
        help="snapshot the store and compact the log once N entries were applied since the "
        "last snapshot (10000; 0: never snapshot, the log grows without bound)",
    )
    p.add_argument(
        "--snapshot-bytes",
        type=_nonnegative_int,
        default=64 * 1024 * 1024,
        metavar="B",
        help="... or once the entries applied since the last snapshot hold B bytes (64 MiB)",
    )
    p.add_argument(
        "--snapshot-log-ratio",
        type=float,
        default=1.0,
        metavar="R",
        help="... and, for a store over 4 MiB, only once those entries hold R times what the "
        "last snapshot has beyond 4 MiB, so a large store is not rewritten every N entries "
        "(1.0; 0: by N and B alone)",
    )
    p.add_argument(
        "--wal-segment-mb",
        type=_positive_int,
        default=64,
        metavar="N",
        help="WAL segment size in MiB, reserved whole on disk (64; 1..1024: a new node needs "
        "N MiB free to start, so use less on a small volume)",
    )
    p.add_argument("--no-fsync", action="store_true", help=argparse.SUPPRESS)  # tests only
    from raftkv.security.cli import add_serve_options  # noqa: PLC0415 (loads cryptography)

    add_serve_options(p)  # --tls-dir, --auth-tokens, connection and size limits
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from raftkv.runtime.server import run  # noqa: PLC0415 (the server is not needed elsewhere)
    from raftkv.runtime.settings import NodeSettings, parse_hostport, parse_peers  # noqa: PLC0415
    from raftkv.security.cli import security_from_args, size_limits_from_args  # noqa: PLC0415

    try:
        listen = parse_hostport(args.listen, "--listen")
        http = parse_hostport(args.http, "--http")
        scheme = "https" if args.tls_dir or args.cert else "http"
        peers_spec = args.peers or f"{args.id}={args.listen}@{scheme}://{args.http}"
        settings = NodeSettings(
            node_id=args.id,
            data_dir=args.data_dir,
            listen=listen,
            http=http,
            peers=parse_peers(peers_spec),
            cluster_id=args.cluster_id,
            allow_fault_injection=args.allow_fault_injection,
            tick_ms=args.tick_ms,
            election_ticks=args.election_ticks,
            slow=args.slow,
            request_timeout_s=args.request_timeout,
            fsync=not args.no_fsync,
            snapshot_entries=args.snapshot_entries,
            snapshot_bytes=args.snapshot_bytes,
            snapshot_log_ratio=args.snapshot_log_ratio,
            wal_segment_mb=args.wal_segment_mb,
            security=security_from_args(args),
            **size_limits_from_args(args),
        )
        join = parse_endpoints(args.join) if args.join else None
    except BadRequest as e:
        raise UsageError(str(e)) from None
    if join is not None:
        from raftkv.runtime.join import prepare_join  # noqa: PLC0415

        if args.peers:
            raise UsageError("--join and --peers exclude each other: a joining node learns them")
        prepare_join(settings, join, args.timeout)
    run(settings)
    return 0


# --- key-value --------------------------------------------------------------------------------


def add_put(sub: Subparsers) -> None:
    p = client_parser(sub, "put", "set KEY to VALUE", cmd_put)
    p.add_argument("key")
    p.add_argument("value")
    p.add_argument(
        "--prev-revision",
        type=_nonnegative_int,
        metavar="R",
        help="only if the key's revision is R (0: only if the key does not exist)",
    )


def cmd_put(args: argparse.Namespace) -> int:
    try:
        result = with_client(
            args,
            lambda c: c.put(args.key, _arg_bytes(args.value), prev_revision=args.prev_revision),
        )
    except Conflict as e:
        now = "does not exist" if e.mod_revision == 0 else f"is at revision {e.mod_revision}"
        print(f"{PROG}: put refused: {args.key!r} {now} ({e})", file=sys.stderr)
        return 1
    print(f"OK (revision {result.revision})")
    return 0


def add_get(sub: Subparsers) -> None:
    p = client_parser(sub, "get", "print KEY's value", cmd_get)
    p.add_argument("key")
    p.add_argument(
        "--consistency",
        choices=CONSISTENCIES,
        default="linearizable",
        help="linearizable (default): confirmed with a quorum; lease: the leader's lease; "
        "stale: whatever the node answering has",
    )
    p.add_argument("--revision", action="store_true", help="print the key's revision too")


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


def add_delete(sub: Subparsers) -> None:
    p = client_parser(sub, "delete", "delete KEY", cmd_delete)
    p.add_argument("key")


def cmd_delete(args: argparse.Namespace) -> int:
    result = with_client(args, lambda c: c.delete(args.key))
    if result.deleted:
        print(f"deleted {args.key!r} (revision {result.revision})")
    else:
        print(f"{args.key!r} did not exist")
    return 0


def add_cas(sub: Subparsers) -> None:
    p = client_parser(sub, "cas", "set KEY to NEW only if its value is EXPECTED", cmd_cas)
    p.add_argument("key")
    p.add_argument("expected")
    p.add_argument("new")


def cmd_cas(args: argparse.Namespace) -> int:
    expected, new = _arg_bytes(args.expected), _arg_bytes(args.new)
    result = with_client(args, lambda c: c.cas(args.key, expected, new))
    if not result.succeeded:
        now = "does not exist" if result.current is None else f"is {_show(result.current)}"
        print(
            f"{PROG}: cas failed: {args.key!r} {now}, not {_show(expected)}; nothing changed",
            file=sys.stderr,
        )
        return 1
    print(f"OK (revision {result.revision})")
    return 0


def add_watch(sub: Subparsers) -> None:
    p = client_parser(sub, "watch", "print changes to keys under PREFIX until Ctrl-C", cmd_watch)
    p.add_argument(
        "prefix",
        nargs="*",
        default=[""],
        help="key prefix (default: every key); several: one watch each, on one stream",
    )
    p.add_argument(
        "--from-revision", type=_positive_int, metavar="R", help="replay from revision R"
    )
    p.add_argument("--count", type=_positive_int, metavar="N", help="exit after N events")
    p.add_argument("--json", action="store_true", help="one JSON object per event")


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


# --- cluster --------------------------------------------------------------------------------


def add_status(sub: Subparsers) -> None:
    p = client_parser(sub, "status", "show every node's role, term and indexes", cmd_status)
    p.add_argument(
        "--json", action="store_true", help="print the leader's status as one JSON object"
    )


def cmd_status(args: argparse.Namespace) -> int:
    if args.json:
        status = with_client(args, lambda c: c.status())
        print(json.dumps(status.raw, sort_keys=False))
        return 0
    statuses = with_client(args, lambda c: c.cluster_status())
    rows: list[list[object]] = []
    problems: list[str] = []
    leader: NodeStatus | None = None
    for endpoint, st in statuses.items():
        if isinstance(st, NodeStatus):
            rows.append(
                [
                    endpoint,
                    st.id,
                    st.role,
                    st.term,
                    st.leader or "-",
                    st.commit_index,
                    st.applied_index,
                    st.last_index,
                ]
            )
            if st.role == "leader" and (leader is None or st.term > leader.term):
                leader = st
        else:
            rows.append([endpoint, "-", "unreachable"])
            problems.append(f"{endpoint}: {st}")
    headers = ["ENDPOINT", "ID", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "LAST"]
    print(table(headers, rows))
    for problem in problems:
        print(f"  {problem}")
    if leader is not None:
        print(f"\nmembers, as the leader {leader.id} sees them:")
        members = [
            [
                m.id,
                m.role,
                "?" if m.match_index is None else m.match_index,
                "yes" if m.reachable else "NO",
            ]
            for m in leader.members
        ]
        print(table(["ID", "ROLE", "MATCH", "REACHABLE"], members))
    elif any(isinstance(st, NodeStatus) for st in statuses.values()):
        print("\nno leader right now (an election may be in progress, or no quorum is reachable)")
    if not any(isinstance(st, NodeStatus) for st in statuses.values()):
        print(f"{PROG}: error: no node answered", file=sys.stderr)
        return 1
    return 0


def add_leader(sub: Subparsers) -> None:
    p = sub.add_parser("leader", help="leadership operations")
    lsub = p.add_subparsers(dest="leader_command", metavar="ACTION", required=True)
    t = client_parser(lsub, "transfer", "hand leadership to node ID", cmd_leader_transfer)
    t.add_argument("id", nargs="?", help="target node (default: the most caught-up follower)")


def cmd_leader_transfer(args: argparse.Namespace) -> int:
    leader = with_client(args, lambda c: c.transfer_leader(args.id))
    print(f"leader is now {leader}")
    return 0


# --- bench ----------------------------------------------------------------------------------


def add_bench(sub: Subparsers) -> None:
    p = client_parser(sub, "bench", "closed-loop load: throughput and latency", cmd_bench)
    p.add_argument("--op", choices=("put", "get"), default="put")
    p.add_argument("--clients", type=_positive_int, default=16, help="concurrent clients (16)")
    p.add_argument("--duration", type=_positive_float, default=10.0, metavar="S", help="(10)")
    p.add_argument(
        "--value-size", type=_nonnegative_int, default=256, metavar="B", help="value bytes (256)"
    )
    p.add_argument("--consistency", choices=CONSISTENCIES, default="linearizable")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")


def cmd_bench(args: argparse.Namespace) -> int:
    from raftkv.client.bench import BenchConfig, ProgressBar, report, run_bench  # noqa: PLC0415

    config = BenchConfig(
        endpoints=endpoints_of(args),
        op=args.op,
        clients=args.clients,
        duration=args.duration,
        value_size=args.value_size,
        consistency=args.consistency,
        timeout=args.timeout,
        credentials=credentials_of(args),
    )

    progress = ProgressBar(args.duration, sys.stderr)
    print(
        f"bench: {args.op}, {args.clients} clients, {args.duration:g}s, "
        f"{args.value_size}-byte values, endpoints {','.join(config.endpoints)}",
        file=sys.stderr,
    )
    try:
        result = _run_fast(run_bench(config, progress))
    finally:
        progress.close()
    print(json.dumps(result.to_json()) if args.json else report(result))
    return 1 if result.ops == 0 else 0


def _run_fast(coro: Awaitable[_T]) -> _T:
    """asyncio.run, on uvloop when it is installed (less client CPU per request)."""

    async def wrap() -> _T:
        return await coro

    try:
        import uvloop  # noqa: PLC0415
    except ImportError:
        return asyncio.run(wrap())
    result: _T = uvloop.run(wrap())
    return result


if __name__ == "__main__":
    raise SystemExit(main())
