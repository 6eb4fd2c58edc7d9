"""Operations and the helpers that build histories from recorded requests."""

from __future__ import annotations

import math

import pytest

from raftkv.check.history import UNKNOWN_OUTPUT, Operation, OpOutcome, Recorder, make_operation
from raftkv.check.models import UNKNOWN_OUTPUT as REEXPORTED


def test_operation_is_a_closed_interval_and_open_by_default() -> None:
    op = Operation(1, "in", UNKNOWN_OUTPUT, 3)
    assert op.is_open and op.ret == math.inf
    assert not Operation(1, "in", "out", 3, 3).is_open
    with pytest.raises(ValueError, match="returns before"):
        Operation(1, "in", "out", 4, 3)


def test_unknown_output_is_one_hashable_sentinel() -> None:
    assert REEXPORTED is UNKNOWN_OUTPUT
    assert repr(UNKNOWN_OUTPUT) == "UNKNOWN_OUTPUT"
    assert {UNKNOWN_OUTPUT: 1}[UNKNOWN_OUTPUT] == 1
    others: tuple[object, ...] = (None, False, "", "unknown")
    assert UNKNOWN_OUTPUT not in others


def test_make_operation_by_outcome() -> None:
    assert make_operation(1, "x", "v", 1, 2) == Operation(1, "x", "v", 1, 2)
    assert make_operation(1, "x", "v", 1, 2, outcome=OpOutcome.FAIL) is None
    unknown = make_operation(1, "x", "v", 1, 2, outcome=OpOutcome.UNKNOWN)
    assert unknown == Operation(1, "x", UNKNOWN_OUTPUT, 1, math.inf)


def test_recorder_uses_event_indices_and_keeps_pending_ops_open() -> None:
    rec = Recorder()
    a = rec.invoke(1, "a")  # event 0
    b = rec.invoke(2, "b")  # event 1
    rec.ok(b, "B")  # event 2
    c = rec.invoke(3, "c")  # event 3
    rec.fail(c)  # event 4: dropped
    d = rec.invoke(4, "d")  # event 5
    rec.unknown(d)  # event 6
    rec.invoke(5, "e")  # event 7, never completed
    assert rec.history() == [
        Operation(1, "a", UNKNOWN_OUTPUT, 0),
        Operation(2, "b", "B", 1, 2),
        Operation(4, "d", UNKNOWN_OUTPUT, 5),
        Operation(5, "e", UNKNOWN_OUTPUT, 7),
    ]
    rec.ok(a, "A")
    assert rec.history()[0] == Operation(1, "a", "A", 0, 8)
    with pytest.raises(KeyError):
        rec.ok(a, "again")
