"""Operations that never returned: placed only where observed, verdicts unchanged, search small.

The step bounds below are counts of the deterministic search, not wall time.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv.check.history import UNKNOWN_OUTPUT, Operation
from raftkv.check.knossos import lose_outcomes, parse_knossos_edn
from raftkv.check.linearizability import Verdict, check
from raftkv.check.model import Model
from raftkv.check.models import (
    AppendOp,
    EtcdRegisterModel,
    KvAppendInput,
    KvAppendModel,
    KvInput,
    KvRegisterModel,
    RegisterInput,
    RegisterOp,
)
from raftkv.check.search import Search, SearchVerdict

U = UNKNOWN_OUTPUT
INF = math.inf
KNOSSOS = Path(__file__).resolve().parents[1] / "data" / "knossos" / "memstress3-0.edn"
REGISTER = EtcdRegisterModel()


def _write(v: int) -> RegisterInput:
    return RegisterInput(RegisterOp.WRITE, v)


def _cas(expected: int | None, v: int) -> RegisterInput:
    return RegisterInput(RegisterOp.CAS, value=v, expected=expected)


READ = RegisterInput(RegisterOp.READ)


def _knossos(lost: int, last_read: int) -> list[Operation]:
    """memstress3-0 with the first `lost` operations open and its last read altered."""
    ops = lose_outcomes(parse_knossos_edn(KNOSSOS.read_text()), lost)
    last = max(range(len(ops)), key=lambda i: ops[i].call)
    assert ops[last].input == READ and ops[last].output == 0
    ops[last] = dataclasses.replace(ops[last], output=last_read)
    return ops


def _assert_witness(ops: Sequence[Operation], model: Model[Any]) -> None:
    """The search's linearization holds every op once, in a legal real-time order."""
    search = Search(ops, model)
    assert search.run(10**7) is SearchVerdict.OK
    order = search.linearization()
    assert sorted(order) == list(range(len(ops)))
    state = model.init()
    for position, i in enumerate(order):
        legal, state = model.step(state, ops[i].input, ops[i].output)
        assert legal
        assert all(ops[j].ret >= ops[i].call for j in order[position + 1 :])


# --- the Knossos history ---------------------------------------------------------------------


@pytest.mark.parametrize("lost", [9, 12, 16])
def test_a_stale_read_among_lost_outcomes_is_refuted_in_few_steps(lost: int) -> None:
    """The earliest-open-first search took 706,832 steps (9 lost) and more than 15 M (16)."""
    ops = _knossos(lost, last_read=3)
    assert sum(op.is_open for op in ops) == lost
    result = check(ops, REGISTER, max_steps=2_000)
    assert result.verdict is Verdict.ILLEGAL, result.explanation
    assert "read() -> 3" in result.explanation


@pytest.mark.parametrize("lost", [9, 12, 16])
def test_a_read_only_a_lost_write_explains_is_linearizable_in_few_steps(lost: int) -> None:
    ops = _knossos(lost, last_read=4)
    assert check(ops, REGISTER, max_steps=500).verdict is Verdict.OK
    assert check(_knossos(0, last_read=4), REGISTER).verdict is Verdict.ILLEGAL
    _assert_witness(ops, REGISTER)


class SetModel(Model[frozenset[str]]):
    """A set of letters: add and remove commute unless they touch the same letter."""

    def init(self) -> frozenset[str]:
        return frozenset()

    def step(
        self, state: frozenset[str], input: object, output: object
    ) -> tuple[bool, frozenset[str]]:
        assert isinstance(input, tuple)
        kind, letter = input
        if kind == "add":
            return True, state | {letter}
        if kind == "remove":
            return True, state - {letter}
        return output is UNKNOWN_OUTPUT or output == state, state


# --- each rule that keeps an open operation back, on a case where it must not -------------------


def test_an_open_operation_goes_before_a_definite_one_it_does_not_make_legal() -> None:
    """append(y) is legal with or without the open append(x) before it, but a later read sees
    x then y: the open one must go first although nothing directly after it needs it."""
    append_x = Operation(0, KvAppendInput(AppendOp.APPEND, "k", "x"), U, 0)
    append_y = Operation(1, KvAppendInput(AppendOp.APPEND, "k", "y"), None, 1, 2)
    get = KvAppendInput(AppendOp.GET, "k")
    ops = [append_x, append_y, Operation(2, get, "xy", 3, 4)]
    assert check(ops, KvAppendModel()).verdict is Verdict.OK
    _assert_witness(ops, KvAppendModel())
    ops = [append_x, append_y, Operation(2, get, "yxy", 3, 4)]
    assert check(ops, KvAppendModel()).verdict is Verdict.ILLEGAL


def test_open_operations_that_only_a_chain_of_them_makes_visible() -> None:
    ops = [
        Operation(0, _write(0), None, 0, 1),
        Operation(1, _cas(1, 2), U, 2),  # needs the other open cas first
        Operation(2, _cas(0, 1), U, 3),
        Operation(3, READ, 2, 4, 5),
    ]
    assert check(ops, REGISTER).verdict is Verdict.OK
    _assert_witness(ops, REGISTER)


def test_open_operations_that_commute_are_kept_in_one_order() -> None:
    """add y and add z commute: only one order of the pair is skipped, not both."""
    ops = [
        Operation(0, ("add", "y"), U, 0),
        Operation(1, ("add", "z"), U, 1),
        Operation(2, ("read", ""), frozenset("yz"), 2, 3),
    ]
    assert check(ops, SetModel()).verdict is Verdict.OK
    _assert_witness(ops, SetModel())
    assert check(ops[1:], SetModel()).verdict is Verdict.ILLEGAL


def test_equal_open_operations_are_each_available_once() -> None:
    reads = [Operation(3, READ, v, 10 + 2 * n, 11 + 2 * n) for n, v in enumerate([1, 2, 1])]
    write2 = Operation(2, _write(2), None, 0, 11)
    twice = [Operation(0, _write(1), U, 0), Operation(1, _write(1), U, 1), write2, *reads]
    assert check(twice, REGISTER).verdict is Verdict.OK
    _assert_witness(twice, REGISTER)
    assert check([twice[0], write2, *reads], REGISTER).verdict is Verdict.ILLEGAL
    # Equal ones are taken in call order: the one called too late must not stand in.
    early_and_late = [twice[0], Operation(1, READ, 1, 5, 6), Operation(2, _write(1), U, 20)]
    assert check(early_and_late, REGISTER).verdict is Verdict.OK


def test_a_node_reached_with_fewer_open_operations_is_not_covered_by_one_with_more() -> None:
    """The search first reaches (write 2, write 0, read 2) with the open write of 2 spent on
    the read, and fails at read 4; the same node reached without it must still be explored,
    because read 4 needs that write and the open cas after it."""
    ops = [
        Operation(0, _write(2), U, 67),
        Operation(1, _cas(2, 4), U, 75),
        Operation(2, _write(2), None, 92, 149),
        Operation(3, _write(0), None, 121, 142),
        Operation(4, READ, 2, 224, 256),
        Operation(5, _write(0), None, 259, 264),
        Operation(6, READ, 4, 304, 320),
    ]
    assert check(ops, REGISTER).verdict is Verdict.OK
    _assert_witness(ops, REGISTER)


def test_an_overwritten_open_write_is_left_to_the_end() -> None:
    ops = [
        Operation(0, _write(1), U, 0),
        Operation(1, _write(2), None, 1, 2),
        Operation(2, READ, 2, 3, 4),
    ]
    search = Search(ops, REGISTER)
    assert search.run(100) is SearchVerdict.OK
    assert search.linearization() == [1, 2, 0]


def test_open_reads_cost_no_steps_when_nothing_fails() -> None:
    ops = [Operation(0, _write(n % 3), None, 4 * n, 4 * n + 1) for n in range(30)]
    ops += [Operation(1, READ, n % 3, 4 * n + 2, 4 * n + 3) for n in range(30)]
    with_open = ops + [Operation(2, READ, U, 3 * n) for n in range(40)]
    plain, opened = check(ops, REGISTER), check(with_open, REGISTER)
    assert plain.verdict is opened.verdict is Verdict.OK
    assert opened.steps == plain.steps


def test_a_model_must_accept_an_unknown_output_in_every_state() -> None:
    class Strict(EtcdRegisterModel):
        def step(self, state: int | None, input: object, output: object) -> tuple[bool, Any]:
            return output is not UNKNOWN_OUTPUT, state

    with pytest.raises(ValueError, match="must be legal in every state"):
        check([Operation(0, READ, U, 0)], Strict())


# --- agreement with an exhaustive search that linearizes every operation ------------------------


def _reference(ops: Sequence[Operation], model: Model[Any]) -> bool:
    """Wing & Gong without the open-operation rules: every op, open or not, is linearized."""
    full = (1 << len(ops)) - 1
    failed: set[tuple[int, Any]] = set()

    def extend(done: int, state: Any) -> bool:
        if done == full:
            return True
        if (done, state) in failed:
            return False
        rest = [i for i in range(len(ops)) if not done >> i & 1]
        horizon = min(ops[i].ret for i in rest)
        for i in rest:
            if ops[i].call <= horizon:
                legal, after = model.step(state, ops[i].input, ops[i].output)
                if legal and extend(done | 1 << i, after):
                    return True
        failed.add((done, state))
        return False

    return extend(0, model.init())


_MODELS: dict[str, Model[Any]] = {
    "register": REGISTER,
    "kv": KvRegisterModel(),
    "append": KvAppendModel(),
    "set": SetModel(),
}


@st.composite
def _op(draw: st.DrawFn, model: str) -> tuple[object, object]:
    """(input, definite output) for the model; values from small sets, so repeats are common."""
    if model == "register":
        kind = draw(st.sampled_from(["read", "write", "cas"]))
        if kind == "read":
            return READ, draw(st.sampled_from([None, 0, 1, 2, U]))
        if kind == "write":
            return _write(draw(st.integers(0, 2))), None
        cas = _cas(draw(st.sampled_from([None, 0, 1])), draw(st.integers(0, 2)))
        return cas, draw(st.booleans())
    if model == "kv":
        kind = draw(st.sampled_from(["get", "put", "cas", "delete"]))
        value = draw(st.sampled_from(["a", "b"]))
        if kind == "get":
            return KvInput("get", "k"), draw(st.sampled_from([None, "a", "b", U]))
        if kind == "cas":
            expected = draw(st.sampled_from([None, "a", "b"]))
            return KvInput("cas", "k", value, expected), draw(st.booleans())
        return KvInput(kind, "k", value if kind == "put" else None), None
    if model == "set":
        kind = draw(st.sampled_from(["add", "add", "remove", "read"]))
        if kind == "read":
            return ("read", ""), frozenset(draw(st.sets(st.sampled_from("xyz"))))
        return (kind, draw(st.sampled_from("xyz"))), None
    kind = draw(st.sampled_from(list(AppendOp)))
    if kind is AppendOp.GET:
        return KvAppendInput(kind, "k"), draw(st.sampled_from(["", "x", "y", "xy", "yx", "xx"]))
    return KvAppendInput(kind, "k", draw(st.sampled_from(["x", "y"]))), None


@st.composite
def _histories(draw: st.DrawFn) -> tuple[str, list[Operation]]:
    model = draw(st.sampled_from(sorted(_MODELS)))
    ops = []
    for client in range(draw(st.integers(1, 9))):
        inp, output = draw(_op(model))
        call = draw(st.integers(0, 10))
        if draw(st.booleans()):
            ops.append(Operation(client, inp, U, call))
        else:
            ops.append(Operation(client, inp, output, call, call + draw(st.integers(0, 4))))
    return model, ops


@settings(max_examples=800, deadline=None)
@given(_histories())
def test_agrees_with_linearizing_every_operation(case: tuple[str, list[Operation]]) -> None:
    name, ops = case
    model = _MODELS[name]
    expected = _reference(ops, model)
    assert check(ops, model).verdict is (Verdict.OK if expected else Verdict.ILLEGAL)
    if expected:
        _assert_witness(ops, model)
