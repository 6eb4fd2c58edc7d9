"""Parsers for Porcupine's test data (tests/data/porcupine, see EXPECTED.md there).

Both formats are event logs: the line index is the time, and a completion line is matched to
the open call of the same process id. Lines matching no pattern are ignored (notably Jepsen's
`:info ... :timed-out`), so an indeterminate operation stays open: once the log ends every
still-open operation gets ret = math.inf and output UNKNOWN_OUTPUT, i.e. it may take effect
at any point after its call, or never.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from raftkv.check.history import UNKNOWN_OUTPUT, Operation
from raftkv.check.models.kv_append import AppendOp, KvAppendInput
from raftkv.check.models.register import RegisterInput, RegisterOp

_JEPSEN = r"^INFO\s+jepsen\.util\s+-\s+(\d+)\s+"
_J_INVOKE_READ = re.compile(_JEPSEN + r":invoke\s+:read\s+nil$")
_J_INVOKE_WRITE = re.compile(_JEPSEN + r":invoke\s+:write\s+(\d+)$")
_J_INVOKE_CAS = re.compile(_JEPSEN + r":invoke\s+:cas\s+\[(\d+)\s+(\d+)\]$")
_J_OK_READ = re.compile(_JEPSEN + r":ok\s+:read\s+(nil|\d+)$")
_J_OK_WRITE = re.compile(_JEPSEN + r":ok\s+:write\s+(\d+)$")
_J_DONE_CAS = re.compile(_JEPSEN + r":(ok|fail)\s+:cas\s+\[(\d+)\s+(\d+)\]$")
_J_FAIL_READ = re.compile(_JEPSEN + r":fail\s+:read\s+:timed-out$")

_KV_INVOKE = re.compile(
    r'^\{:process (\d+), :type :invoke, :f :(get|put|append), :key "(.*)", :value (nil|"(.*)")\}$'
)
_KV_OK = re.compile(
    r'^\{:process (\d+), :type :ok, :f :(get|put|append), :key ".*", :value "(.*)"\}$'
)


@dataclass(frozen=True, slots=True)
class _Open:
    input: object
    call: int


class _Matcher:
    """Matches completions to open calls by process id. Invariant: one open call per process."""

    __slots__ = ("_open", "ops")

    def __init__(self) -> None:
        self._open: dict[int, _Open] = {}
        self.ops: list[Operation] = []

    def invoke(self, line: int, process: int, input: object) -> None:
        if process in self._open:
            raise ValueError(f"line {line + 1}: process {process} invokes while busy")
        self._open[process] = _Open(input, line)

    def complete(self, line: int, process: int, output: object) -> object:
        """Close the process's open call; returns its input."""
        pending = self._open.pop(process, None)
        if pending is None:
            raise ValueError(f"line {line + 1}: completion for idle process {process}")
        self.ops.append(Operation(process, pending.input, output, pending.call, line))
        return pending.input

    def finish(self) -> list[Operation]:
        """Close every open call with an unknown outcome; all operations in call order."""
        for process, pending in self._open.items():
            self.ops.append(Operation(process, pending.input, UNKNOWN_OUTPUT, pending.call))
        self._open.clear()
        return sorted(self.ops, key=lambda op: op.call)


def _expect(line: int, input: object, op: RegisterOp) -> None:
    assert isinstance(input, RegisterInput)
    if input.op is not op:
        raise ValueError(f"line {line + 1}: {op} completes a {input.op}")


def parse_jepsen_log(text: str) -> list[Operation]:
    """A Jepsen etcd log (jepsen/etcd_NNN.log) -> operations for EtcdRegisterModel."""
    m = _Matcher()
    for line, raw in enumerate(text.splitlines()):
        if match := _J_INVOKE_READ.match(raw):
            m.invoke(line, int(match[1]), RegisterInput(RegisterOp.READ))
        elif match := _J_INVOKE_WRITE.match(raw):
            m.invoke(line, int(match[1]), RegisterInput(RegisterOp.WRITE, int(match[2])))
        elif match := _J_INVOKE_CAS.match(raw):
            cas = RegisterInput(RegisterOp.CAS, value=int(match[3]), expected=int(match[2]))
            m.invoke(line, int(match[1]), cas)
        elif match := _J_OK_READ.match(raw):
            value = None if match[2] == "nil" else int(match[2])
            _expect(line, m.complete(line, int(match[1]), value), RegisterOp.READ)
        elif match := _J_OK_WRITE.match(raw):
            _expect(line, m.complete(line, int(match[1]), None), RegisterOp.WRITE)
        elif match := _J_DONE_CAS.match(raw):
            swapped = match[2] == "ok"
            _expect(line, m.complete(line, int(match[1]), swapped), RegisterOp.CAS)
        elif match := _J_FAIL_READ.match(raw):
            _expect(line, m.complete(line, int(match[1]), UNKNOWN_OUTPUT), RegisterOp.READ)
    return m.finish()


def parse_kv_log(text: str) -> list[Operation]:
    """A Jepsen-style EDN kv log (kv/cNN-*.txt) -> operations for KvAppendModel.

    The key of a completion is taken from its call. Outputs: get -> the string read;
    put and append -> None.
    """
    m = _Matcher()
    for line, raw in enumerate(text.splitlines()):
        if match := _KV_INVOKE.match(raw):
            op = AppendOp(match[2])
            if (op is AppendOp.GET) != (match[4] == "nil"):
                continue  # Porcupine's patterns: get has value nil, put/append a string
            value = "" if op is AppendOp.GET else match[5]
            m.invoke(line, int(match[1]), KvAppendInput(op, match[3], value))
        elif match := _KV_OK.match(raw):
            op = AppendOp(match[2])
            output = match[3] if op is AppendOp.GET else None
            called = m.complete(line, int(match[1]), output)
            assert isinstance(called, KvAppendInput)
            if called.op is not op:
                raise ValueError(f"line {line + 1}: {op} completes a {called.op}")
    return m.finish()
