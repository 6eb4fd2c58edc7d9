"""`raftkv txn`: an etcd-style transaction (POST /v1/txn, docs/http.md), atomically: if every
comparison holds, the --then operations run, else the --else ones.

    raftkv txn --if 'mod(config) = 7' --then 'put config @new.json' --else 'get config'
    raftkv txn --if 'version(lock) = 0' --then 'put lock me' --then 'delete queue/ --prefix'
    raftkv txn --file body.json          # the /v1/txn JSON body; '-' reads it from stdin

A comparison is TARGET(KEY) OP OPERAND: TARGET is value, version, create (create revision)
or mod (mod revision); OP is =, !=, < or >; the operand of value is a VALUE, the others'
an integer. An operation is `put KEY VALUE`, `delete KEY [--prefix]` or `get KEY [--prefix]`.
Quote a KEY or VALUE with spaces inside the clause, shell-style: --then 'put "a b" "c d"'.
A VALUE is taken as typed, except '-' (stdin) and '@FILE' (the file's bytes), as for `put`.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from raftkv.cli.common import (
    Subparsers,
    UsageError,
    ValueReader,
    add_literal_option,
    client_parser,
    show,
    with_client,
)
from raftkv.client import TxnResult
from raftkv.client.types import encode_value, key_value

TARGETS = ("value", "version", "create", "mod")
_COMPARE = re.compile(r"^\s*(\w+)\s*\((.*)\)\s*(==|=|!=|<|>)\s*(.*?)\s*$", re.DOTALL)


def add_parser(sub: Subparsers) -> None:
    p = client_parser(sub, "txn", "compare, then put/delete/get atomically (etcd-style)", cmd_txn)
    p.description = (__doc__ or "").split("\n\n", 1)[0]
    p.epilog = (__doc__ or "").split("\n\n", 1)[1]
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument(
        "--if",
        dest="compare",
        action="append",
        default=[],
        metavar="COMPARISON",
        help="TARGET(KEY) OP OPERAND, e.g. 'value(k) = v', 'mod(k) < 5' (repeatable: all must "
        "hold)",
    )
    p.add_argument(
        "--then",
        dest="success",
        action="append",
        default=[],
        metavar="OP",
        help="run if every comparison holds (repeatable, in order)",
    )
    p.add_argument(
        "--else",
        dest="failure",
        action="append",
        default=[],
        metavar="OP",
        help="run otherwise (repeatable, in order)",
    )
    p.add_argument(
        "-f",
        "--file",
        metavar="FILE",
        help="the whole transaction as the JSON body of POST /v1/txn ('-': stdin); instead of "
        "--if/--then/--else",
    )
    add_literal_option(p)
    p.add_argument("--json", action="store_true", help="print the answer as one JSON object")


def cmd_txn(args: argparse.Namespace) -> int:
    if args.file is not None:
        if args.compare or args.success or args.failure:
            raise UsageError("--file and --if/--then/--else exclude each other")
        body = _from_file(args.file)
    else:
        values = ValueReader(args.literal)
        body = {
            "compare": [parse_compare(c, values) for c in args.compare],
            "success": [parse_op(o, values) for o in args.success],
            "failure": [parse_op(o, values) for o in args.failure],
        }
        if not body["success"] and not body["failure"]:
            raise UsageError("nothing to do: give --then and/or --else operations (or --file)")
    result = with_client(args, lambda c: c.txn(body["compare"], body["success"], body["failure"]))
    if args.json:
        print(json.dumps(_result_json(result)))
    else:
        ran = body["success"] if result.succeeded else body["failure"]
        print(describe(result, ran))
    return 0


def parse_compare(text: str, values: ValueReader) -> dict[str, Any]:
    m = _COMPARE.match(text)
    if m is None or m.group(1) not in TARGETS:
        raise UsageError(
            f"--if {text!r}: expected TARGET(KEY) OP OPERAND with TARGET one of "
            f"{', '.join(TARGETS)}, e.g. 'value(k) = v' or 'mod(k) < 5'"
        )
    target, key_text, op, operand_text = m.groups()
    key = _one_word(key_text, f"--if {text!r}: the key")
    operand = _one_word(operand_text, f"--if {text!r}: the operand")
    out: dict[str, Any] = {"key": key, "target": target, "op": "=" if op == "==" else op}
    if target == "value":
        out.update(encode_value(values.read(operand)))
    else:
        try:
            out["value"] = int(operand)
        except ValueError:
            raise UsageError(f"--if {text!r}: {target} compares with an integer") from None
    return out


def parse_op(text: str, values: ValueReader) -> dict[str, Any]:
    words = _split(text, f"operation {text!r}")
    prefix = "--prefix" in words[1:]
    words = [w for i, w in enumerate(words) if i == 0 or w != "--prefix"]
    match words:
        case ["put", key, value] if not prefix:
            return {"put": {"key": key, **encode_value(values.read(value))}}
        case ["delete" | "get" as verb, key]:
            return {verb: {"key": key, "prefix": prefix}}
    raise UsageError(
        f"operation {text!r}: expected `put KEY VALUE`, `delete KEY [--prefix]` or "
        "`get KEY [--prefix]`"
    )


def describe(result: TxnResult, ran: list[dict[str, Any]]) -> str:
    """What happened, one line per operation that ran."""
    head = (
        "SUCCEEDED: the comparisons held, --then ran"
        if result.succeeded
        else ("FAILED: a comparison did not hold, --else ran")
    )
    lines = [f"{head} (revision {result.revision})"]
    for op, response in zip(ran, result.responses, strict=False):
        verb, args = next(iter(op.items()))
        key = args.get("key", "")
        got = response.get(verb, {})
        where = f"{verb} {key!r}" + (" --prefix" if args.get("prefix") else "")
        match verb:
            case "put":
                lines.append(f"{where}: OK (it was at revision {got.get('prev_revision', 0)})")
            case "delete":
                lines.append(f"{where}: {got.get('deleted', 0)} deleted")
            case _:
                kvs = [key_value(kv) for kv in got.get("kvs", [])]
                if not kvs:
                    lines.append(f"{where}: not found")
                for kv in kvs:
                    value = show(kv.value)
                    lines.append(f"{where}: {kv.key!r} = {value} (revision {kv.mod_revision})")
    return "\n".join(lines)


def _from_file(name: str) -> dict[str, list[Any]]:
    where = "stdin" if name == "-" else name
    try:
        text = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
        doc = json.loads(text)
    except OSError as e:
        raise UsageError(f"cannot read {where}: {e.strerror or e}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise UsageError(f"{where} is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{where}: a transaction is a JSON object (docs/http.md)")
    unknown = set(doc) - {"compare", "success", "failure"}
    if unknown:
        raise UsageError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    out: dict[str, list[Any]] = {}
    for name_ in ("compare", "success", "failure"):
        items = doc.get(name_, [])
        if not isinstance(items, list):
            raise UsageError(f'{where}: "{name_}" must be a JSON list')
        out[name_] = items
    return out


def _result_json(result: TxnResult) -> dict[str, Any]:
    return {
        "succeeded": result.succeeded,
        "revision": result.revision,
        "index": result.index,
        "responses": list(result.responses),
    }


def _split(text: str, what: str) -> list[str]:
    try:
        words = shlex.split(text)
    except ValueError as e:
        raise UsageError(f"{what}: {e}") from None
    if not words:
        raise UsageError(f"{what} is empty")
    return words


def _one_word(text: str, what: str) -> str:
    words = _split(text, what)
    if len(words) != 1:
        raise UsageError(f"{what} must be one word (quote it if it has spaces)")
    return words[0]
