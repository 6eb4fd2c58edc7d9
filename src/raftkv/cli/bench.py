"""`raftkv bench`: closed-loop load (the engine: raftkv.client.bench)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable
from typing import TypeVar

from raftkv.cli.common import (
    Subparsers,
    client_parser,
    credentials_of,
    endpoints_of,
    nonnegative_int,
    positive_float,
    positive_int,
)
from raftkv.client import CONSISTENCIES

_T = TypeVar("_T")


def add_parser(sub: Subparsers) -> None:
    p = client_parser(sub, "bench", "closed-loop load: throughput and latency", cmd_bench)
    p.add_argument("--op", choices=("put", "get"), default="put")
    p.add_argument("--clients", type=positive_int, default=16, help="concurrent clients (16)")
    p.add_argument("--duration", type=positive_float, default=10.0, metavar="S", help="(10)")
    p.add_argument(
        "--value-size", type=nonnegative_int, default=256, metavar="B", help="value bytes (256)"
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
