"""The `raftkv` command: one module per command group, each with `add_parser(subparsers)`.

    common.py    what the commands share: client options, endpoints, errors, tables
    serve.py     raftkv serve (its settings: raftkv.nodeconfig)
    kv.py        put, get, delete, cas, watch          txn.py      txn
    status.py    status                                 leader.py   leader transfer
    member.py    member list|add|remove|promote         snapshot.py snapshot save|restore
    bench.py     bench                                  sim.py      sim
    cluster.py   cluster up|join|remove|down            chaos.py    chaos
    certs.py     certs init|client                      demo.py     demo
    faultfs.py   faultfs (a FUSE file system for power-cut tests)

A command module builds its parser and sets `func` (Namespace -> exit code). COMMANDS lists
the modules in --help order; they are imported when the parser is built.

Exit codes: 0 success, 1 failure (one line on stderr, never a traceback for an expected
error), 2 usage error (a bad flag, setting or endpoint list), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from raftkv.cli.common import (
    PROG,
    AddParser,
    Handler,
    Subparsers,
    UsageError,
    add_client_options,
)
from raftkv.client import ENV_VAR
from raftkv.devcluster.topology import DEFAULT_DATA_DIR
from raftkv.errors import RaftkvError

__all__ = ["PROG", "Subparsers", "UsageError", "build_parser", "commands", "main"]


def commands() -> list[AddParser | str]:
    """One entry per command module ("module:function", or the function), in --help order."""
    return [
        "raftkv.cli.demo:add_parser",
        "raftkv.cli.serve:add_parser",
        "raftkv.cli.cluster:add_parser",
        "raftkv.cli.kv:add_parser",
        "raftkv.cli.txn:add_parser",
        "raftkv.cli.status:add_parser",
        "raftkv.cli.member:add_parser",
        "raftkv.cli.leader:add_parser",
        "raftkv.cli.bench:add_parser",
        "raftkv.cli.snapshot:add_parser",
        "raftkv.cli.sim:add_parser",
        "raftkv.cli.chaos:add_parser",
        "raftkv.cli.faultfs:add_parser",
        "raftkv.cli.certs:add_parser",
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
    add_client_options(parser, suppress=False)
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
