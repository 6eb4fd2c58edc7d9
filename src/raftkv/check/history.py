"""Histories: the operations a checker sees, and helpers to record them.

An operation is a closed interval [call, ret] of some totally ordered time (event indices or a
monotonic clock). At equal timestamps a call orders before a return, so [1, 2] and [2, 3]
overlap. An operation whose outcome is unknown stays open until the end of the history
(ret = math.inf) with output UNKNOWN_OUTPUT: it may have taken effect at any point after its
call, or never.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Final


class OpOutcome(enum.Enum):
    """What a client learned about one request.

    OK: completed, and its output is definite (a cas that did not swap is OK with output False).
    FAIL: definitely had no effect (rejected before it could commit); it leaves the history.
    UNKNOWN: may or may not have taken effect (timeout, crash); it stays open to the end.
    """

    OK = "ok"
    FAIL = "fail"
    UNKNOWN = "unknown"


class _UnknownOutput(enum.Enum):
    """A one-member enum: a hashable, typed sentinel that survives copying and pickling."""

    UNKNOWN = "unknown"

    def __repr__(self) -> str:
        return "UNKNOWN_OUTPUT"


UNKNOWN_OUTPUT: Final = _UnknownOutput.UNKNOWN
"""The output of an operation whose result was never observed. Models treat it as always legal."""


@dataclass(frozen=True, slots=True)
class Operation:
    """One client operation. Invariant: call <= ret; ret is math.inf iff the outcome is unknown.

    input and output must be hashable values the model understands; output may be UNKNOWN_OUTPUT.
    """

    client: int
    input: object
    output: object
    call: float
    ret: float = math.inf

    def __post_init__(self) -> None:
        if not self.call <= self.ret:
            raise ValueError(f"operation returns before it is called: {self}")

    @property
    def is_open(self) -> bool:
        """True when the operation never returned (it may take effect at any time after call)."""
        return self.ret == math.inf


def make_operation(
    client: int,
    input: object,
    output: object,
    call: float,
    ret: float,
    outcome: OpOutcome = OpOutcome.OK,
) -> Operation | None:
    """Turn one recorded request into an Operation, or None when it definitely had no effect."""
    if outcome is OpOutcome.FAIL:
        return None
    if outcome is OpOutcome.UNKNOWN:
        return Operation(client, input, UNKNOWN_OUTPUT, call, math.inf)
    return Operation(client, input, output, call, ret)


@dataclass(slots=True)
class _Pending:
    client: int
    input: object
    call: int


class Recorder:
    """Records calls and returns as an event sequence; the event index is the time.

    Events must be recorded in the real-time order they happened (a single-threaded simulator
    or event loop does this naturally). Invariant: every token is completed at most once.
    """

    __slots__ = ("_done", "_events", "_pending")

    def __init__(self) -> None:
        self._events = 0
        self._pending: dict[int, _Pending] = {}
        self._done: list[tuple[int, Operation]] = []

    def _tick(self) -> int:
        now = self._events
        self._events += 1
        return now

    def invoke(self, client: int, input: object) -> int:
        """Record a call; returns the token to complete it with."""
        token = self._tick()
        self._pending[token] = _Pending(client, input, token)
        return token

    def ok(self, token: int, output: object) -> None:
        """The request completed with a definite output."""
        self._finish(token, output, OpOutcome.OK)

    def fail(self, token: int) -> None:
        """The request definitely had no effect: it is dropped from the history."""
        self._finish(token, None, OpOutcome.FAIL)

    def unknown(self, token: int) -> None:
        """The outcome will never be known: the operation stays open to the end."""
        self._finish(token, UNKNOWN_OUTPUT, OpOutcome.UNKNOWN)

    def _finish(self, token: int, output: object, outcome: OpOutcome) -> None:
        pending = self._pending.pop(token, None)
        if pending is None:
            raise KeyError(f"unknown or already completed token {token}")
        op = make_operation(
            pending.client, pending.input, output, pending.call, self._tick(), outcome=outcome
        )
        if op is not None:
            self._done.append((pending.call, op))

    def history(self) -> list[Operation]:
        """All operations so far, by call order; still-pending ones are open (unknown outcome)."""
        ops = list(self._done)
        ops.extend(
            (p.call, Operation(p.client, p.input, UNKNOWN_OUTPUT, p.call))
            for p in self._pending.values()
        )
        ops.sort(key=lambda pair: pair[0])
        return [op for _, op in ops]
