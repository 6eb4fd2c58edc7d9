"""A parser for Knossos' cas-register histories (EDN), for EtcdRegisterModel.

The subset read: a vector or list of maps such as
`{:process 3, :type :ok, :f :cas, :value [1 2]}` (keys in any order, commas optional, `;`
comments). The position of a map is the time. Knossos' semantics: `:ok` completes a call with a
definite result (a read's value; a cas that swapped); `:fail` means it definitely did not happen
(the operation is dropped: a failed cas is not a cas that returned false); `:info`, or no
completion at all, leaves it open (never returned). Maps whose process is not a number (the
nemesis) are skipped.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence

from raftkv.check.history import UNKNOWN_OUTPUT, Operation, Recorder
from raftkv.check.models.register import RegisterInput, RegisterOp

_MAP = re.compile(r"\{([^{}]*)\}")
_PAIR = re.compile(r":([\w-]+)\s+(nil|-?\d+|\[\s*-?\d+\s+-?\d+\s*\]|:[\w-]+)")


def _value(text: str) -> int | tuple[int, int] | str | None:
    if text == "nil":
        return None
    if text.startswith("["):
        first, second = text[1:-1].split()
        return int(first), int(second)
    if text.startswith(":"):
        return text[1:]
    return int(text)


def _input(f: object, value: object, where: str) -> RegisterInput:
    if f == "read":
        return RegisterInput(RegisterOp.READ)
    if f == "write" and isinstance(value, int):
        return RegisterInput(RegisterOp.WRITE, value)
    if f == "cas" and isinstance(value, tuple):
        return RegisterInput(RegisterOp.CAS, value=value[1], expected=value[0])
    raise ValueError(f"{where}: not a register operation: :f {f!r} with :value {value!r}")


def parse_knossos_edn(text: str) -> list[Operation]:
    """A Knossos cas-register history -> operations (by call order) for EtcdRegisterModel."""
    body = "\n".join(line.split(";", 1)[0] for line in text.splitlines())
    recorder = Recorder()
    pending: dict[int, tuple[int, RegisterInput]] = {}  # process -> (token, input)
    for n, match in enumerate(_MAP.finditer(body)):
        where = f"map {n + 1}"
        fields = {key: _value(raw) for key, raw in _PAIR.findall(match[1])}
        process, kind = fields.get("process"), fields.get("type")
        if not isinstance(process, int):
            continue
        if kind == "invoke":
            if process in pending:
                raise ValueError(f"{where}: process {process} invokes while busy")
            inp = _input(fields.get("f"), fields.get("value"), where)
            pending[process] = (recorder.invoke(process, inp), inp)
            continue
        if process not in pending:
            raise ValueError(f"{where}: :{kind} for idle process {process}")
        token, inp = pending.pop(process)
        if _input(fields.get("f"), fields.get("value"), where).op is not inp.op:
            raise ValueError(f"{where}: a {fields.get('f')} completes a {inp.op}")
        if kind == "ok":
            ok_output = {RegisterOp.READ: fields.get("value"), RegisterOp.WRITE: None}
            recorder.ok(token, ok_output.get(inp.op, True))
        elif kind == "fail":
            recorder.fail(token)
        elif kind == "info":
            recorder.unknown(token)
        else:
            raise ValueError(f"{where}: unknown :type {kind!r}")
    return recorder.history()


def lose_outcomes(ops: Sequence[Operation], count: int) -> list[Operation]:
    """The same history with the first `count` operations (by call) open: they never returned."""
    first = sorted(range(len(ops)), key=lambda i: (ops[i].call, i))[:count]
    lost = {i: dataclasses.replace(ops[i], output=UNKNOWN_OUTPUT, ret=math.inf) for i in first}
    return [lost.get(i, op) for i, op in enumerate(ops)]
