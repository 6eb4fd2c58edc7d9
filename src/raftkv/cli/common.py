"""What the commands share: the client options, finding the endpoints, running a client,
argument types, values from stdin or a file, tables."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

from raftkv.client import ENV_VAR, AsyncClient, Credentials, RetryPolicy, parse_endpoints
from raftkv.client.credentials import read_token_file
from raftkv.devcluster.topology import DEFAULT_DATA_DIR, load_topology
from raftkv.errors import BadRequest

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
AddParser: TypeAlias = Callable[[Subparsers], None]
Handler: TypeAlias = Callable[[argparse.Namespace], int]
_T = TypeVar("_T")

PROG = "raftkv"
REFUSED_GRACE_S = 1.0  # the CLI gives up once every endpoint has refused connections this long


class UsageError(Exception):
    """Bad command-line input found after parsing: exit status 2."""


# --- client options -------------------------------------------------------------------------


def add_client_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """--endpoints, --timeout and the credentials, accepted before and after the subcommand."""
    default: Any = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--endpoints",
        default=default,
        metavar="URLS",
        help=f"comma-separated HTTP base URLs of the nodes (default: ${ENV_VAR}, else "
        f"./{DEFAULT_DATA_DIR}/cluster.json)",
    )
    add_timeout_option(parser, suppress=suppress)
    for flag, env, what in (
        ("--cacert", "RAFTKV_CACERT", "CA file to verify https endpoints with"),
        ("--client-cert", "RAFTKV_CLIENT_CERT", "client certificate (PEM) to present"),
        ("--client-key", "RAFTKV_CLIENT_KEY", "the client certificate's key"),
        ("--token-file", "RAFTKV_TOKEN_FILE", "file holding a bearer token (or $RAFTKV_TOKEN)"),
    ):
        parser.add_argument(
            flag, type=Path, default=default, metavar="FILE", help=f"{what} (default: ${env})"
        )


def add_timeout_option(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=argparse.SUPPRESS if suppress else 10.0,
        metavar="S",
        help="give up on a request after S seconds, retries included (default: 10); sooner "
        f"once every endpoint has refused connections for {REFUSED_GRACE_S:g}s",
    )


def client_parser(
    sub: Subparsers, name: str, help: str, handler: Handler
) -> argparse.ArgumentParser:
    """A subcommand that talks to the cluster: takes --endpoints and --timeout too."""
    p = sub.add_parser(name, help=help, description=help)
    add_client_options(p, suppress=True)
    p.set_defaults(func=handler)
    return p


def endpoints_of(args: argparse.Namespace) -> list[str]:
    """--endpoints (an empty one is an error), else $RAFTKV_ENDPOINTS (empty: unset), else
    ./raftkv-data/cluster.json."""
    try:
        if args.endpoints is not None:
            if not args.endpoints.strip():
                raise UsageError(
                    "--endpoints is empty: give comma-separated URLs, e.g. "
                    f"--endpoints http://127.0.0.1:8001, or leave it out to use ${ENV_VAR} "
                    f"or ./{DEFAULT_DATA_DIR}/cluster.json"
                )
            return parse_endpoints(args.endpoints)
        env = os.environ.get(ENV_VAR, "").strip()
        if env:
            return parse_endpoints(env)
        topo = load_topology(Path(DEFAULT_DATA_DIR))
    except BadRequest as e:
        raise UsageError(str(e)) from None
    if topo is not None:
        return topo.endpoints
    raise UsageError(
        f"no endpoints: pass --endpoints URL,... or set {ENV_VAR} "
        "(`raftkv cluster up` prints the export line)"
    )


def cli_policy(timeout: float) -> RetryPolicy:
    """The CLI's retries: to the deadline, but not while every endpoint refuses connections."""
    return RetryPolicy(timeout=timeout, refused_grace=REFUSED_GRACE_S)


def with_client(args: argparse.Namespace, job: Callable[[AsyncClient], Awaitable[_T]]) -> _T:
    """Run job(client) on a fresh event loop with a client for args' endpoints."""
    endpoints = endpoints_of(args)

    async def go() -> _T:
        async with AsyncClient(
            endpoints, policy=cli_policy(args.timeout), credentials=credentials_of(args)
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


# --- argument types -------------------------------------------------------------------------


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def int_in(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be in {lo}..{hi}, got {value}")
        return value

    return parse


# --- values: literal, stdin or a file -----------------------------------------------------------


VALUE_HELP = "'-' reads it from stdin, '@FILE' from FILE (see --literal)"


def add_literal_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--literal",
        action="store_true",
        help="take every VALUE as typed: '-' and '@...' are then stored as such",
    )


class ValueReader:
    """The bytes of VALUE arguments: '-' is stdin (read once: a second '-' is an error),
    '@PATH' the file's bytes (exactly, no newline stripped), anything else the bytes typed.
    literal: every VALUE as typed."""

    def __init__(self, literal: bool) -> None:
        self.literal = literal
        self._stdin_used = False

    def read(self, text: str) -> bytes:
        if self.literal:
            return arg_bytes(text)
        if text == "-":
            if self._stdin_used:
                raise UsageError("only one VALUE can be '-' (stdin)")
            self._stdin_used = True
            return sys.stdin.buffer.read()
        if text.startswith("@"):
            path = text[1:]
            if not path:
                raise UsageError("'@' needs a file name: @PATH (or --literal to store '@')")
            try:
                return Path(path).read_bytes()
            except OSError as e:
                raise UsageError(f"cannot read the value from {path}: {e.strerror or e}") from None
        return arg_bytes(text)


def arg_bytes(text: str) -> bytes:
    """A command-line value as the bytes the user typed (undecodable bytes survive)."""
    return os.fsencode(text)


def show(value: bytes) -> str:
    return repr(value.decode("utf-8", "backslashreplace"))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [list(headers), *([str(c) for c in row] for row in rows)]
    widths = [max(len(r[i]) for r in cells if i < len(r)) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in cells]
    return "\n".join(lines)


def add_deprecated_alias(
    parser: argparse.ArgumentParser, old: str, new: str, dest: str, type: Callable[[str], Any]
) -> None:
    """old: a hidden spelling of the option new (stored in dest), kept for existing scripts;
    using it prints a warning on stderr."""

    class Deprecated(argparse.Action):
        def __call__(
            self,
            parser: argparse.ArgumentParser,
            namespace: argparse.Namespace,
            values: Any,
            option_string: str | None = None,
        ) -> None:
            print(f"{PROG}: warning: {old} is deprecated here, use {new}", file=sys.stderr)
            setattr(namespace, dest, values)

    parser.add_argument(old, action=Deprecated, type=type, metavar="S", help=argparse.SUPPRESS)
