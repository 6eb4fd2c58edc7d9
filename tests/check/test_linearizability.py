"""The checker on small hand-written histories, budgets, explanations, and random histories."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv.check.history import UNKNOWN_OUTPUT, Operation
from raftkv.check.linearizability import CheckResult, Verdict, check
from raftkv.check.models import KvInput, KvRegisterModel

MODEL = KvRegisterModel()
INF = math.inf


def op(inp: KvInput, output: object, call: float, ret: float = INF, client: int = 0) -> Operation:
    return Operation(client, inp, output, call, ret)


def put(key: str, value: str) -> KvInput:
    return KvInput("put", key, value)


def get(key: str) -> KvInput:
    return KvInput("get", key)


def cas(key: str, expected: str | None, value: str) -> KvInput:
    return KvInput("cas", key, value, expected)


def delete(key: str) -> KvInput:
    return KvInput("delete", key)


def verdict(ops: Sequence[Operation], max_steps: int | None = None) -> Verdict:
    return check(ops, MODEL, max_steps=max_steps).verdict


# --- hand-written histories ------------------------------------------------------------------


def test_empty_history_is_linearizable() -> None:
    result = check([], MODEL)
    assert result == CheckResult(Verdict.OK, 0, 0, None, result.explanation)
    assert result.ok


def test_stale_read_after_a_completed_write_is_illegal() -> None:
    ops = [op(put("x", "1"), None, 0, 1), op(get("x"), None, 2, 3, client=1)]
    assert verdict(ops) is Verdict.ILLEGAL


def test_concurrent_overlapping_ops_may_see_either_value() -> None:
    ops = [
        op(put("x", "1"), None, 0, 10),
        op(get("x"), None, 1, 2, client=1),
        op(get("x"), "1", 3, 4, client=2),
        op(get("x"), "1", 5, 6, client=1),
    ]
    assert verdict(ops) is Verdict.OK
    # ...but once a read saw the new value, a later read may not see the old one.
    new_then_old = [
        op(put("x", "1"), None, 0, 10),
        op(get("x"), "1", 1, 2, client=1),
        op(get("x"), None, 3, 4, client=2),
    ]
    assert verdict(new_then_old) is Verdict.ILLEGAL


def test_intervals_are_closed() -> None:
    """A read called at the instant the write returns overlaps it: either value is fine."""
    for seen in (None, "1"):
        assert verdict([op(put("x", "1"), None, 0, 5), op(get("x"), seen, 5, 6)]) is Verdict.OK
    assert verdict([op(put("x", "1"), None, 0, 4), op(get("x"), None, 5, 6)]) is Verdict.ILLEGAL


def test_an_unknown_put_may_take_effect_late_or_never() -> None:
    unknown_put = op(put("x", "1"), UNKNOWN_OUTPUT, 0)
    assert verdict([unknown_put, op(get("x"), "1", 5, 6, client=1)]) is Verdict.OK
    assert verdict([unknown_put, op(get("x"), None, 5, 6, client=1)]) is Verdict.OK
    seen_then_unseen = [
        unknown_put,
        op(get("x"), None, 1, 2, client=1),
        op(get("x"), "1", 3, 4, client=1),
        op(get("x"), None, 5, 6, client=1),
    ]
    assert verdict(seen_then_unseen) is Verdict.ILLEGAL


def test_unknown_cas_and_delete_take_effect_only_as_specified() -> None:
    base = [op(put("x", "a"), None, 0, 1)]
    maybe_cas = op(cas("x", "a", "b"), UNKNOWN_OUTPUT, 2)
    assert verdict([*base, maybe_cas, op(get("x"), "b", 3, 4, client=1)]) is Verdict.OK
    wrong_compare = op(cas("x", "z", "b"), UNKNOWN_OUTPUT, 2)
    assert verdict([*base, wrong_compare, op(get("x"), "b", 3, 4, client=1)]) is Verdict.ILLEGAL
    maybe_delete = op(delete("x"), UNKNOWN_OUTPUT, 2)
    assert verdict([*base, maybe_delete, op(get("x"), None, 3, 4, client=1)]) is Verdict.OK


def test_cas_claiming_success_on_a_mismatch_is_illegal() -> None:
    ops = [op(put("x", "a"), None, 0, 1), op(cas("x", "b", "c"), True, 2, 3, client=1)]
    assert verdict(ops) is Verdict.ILLEGAL
    ops = [op(put("x", "a"), None, 0, 1), op(cas("x", "a", "c"), False, 2, 3, client=1)]
    assert verdict(ops) is Verdict.ILLEGAL
    assert verdict([op(cas("x", None, "c"), True, 0, 1), op(get("x"), "c", 2, 3)]) is Verdict.OK


def test_a_read_with_unknown_output_constrains_nothing() -> None:
    ops = [op(put("x", "1"), None, 0, 1), op(get("x"), UNKNOWN_OUTPUT, 2, 3)]
    assert verdict(ops) is Verdict.OK


def test_budget_exhaustion_is_unknown_never_ok() -> None:
    ops = [op(put("x", str(i)), None, 2 * i, 2 * i + 1) for i in range(50)]
    full = check(ops, MODEL)
    assert full.verdict is Verdict.OK
    for budget in (0, 1, full.steps - 1):
        result = check(ops, MODEL, max_steps=budget)
        assert result.verdict is Verdict.UNKNOWN
        assert result.steps <= budget
        assert "budget" in result.explanation
    assert check(ops, MODEL, max_steps=full.steps).verdict is Verdict.OK
    illegal = [*ops, op(get("x"), "nope", 200, 201)]
    assert check(illegal, MODEL, max_steps=10).verdict is Verdict.UNKNOWN


def test_keys_are_checked_independently_and_the_failing_key_is_reported() -> None:
    ops = [
        op(put("a", "1"), None, 0, 1),
        op(put("b", "1"), None, 0, 1),
        op(get("a"), "1", 2, 3),
        op(get("b"), "2", 2, 3),
    ]
    result = check(ops, MODEL)
    assert (result.verdict, result.partitions, result.failing_partition) == (
        Verdict.ILLEGAL,
        2,
        1,
    )
    text = result.explanation
    assert "partition 2 of 2 (key 'b')" in text
    assert "longest linearizable prefix: 1 of 2 ops" in text
    assert "cannot linearize: #1 client 0 [2..3] get('b') -> '2'" in text
    assert "state after the prefix: '1'" in text


def test_an_illegal_partition_stops_the_search_before_an_expensive_one_finishes() -> None:
    cheap_but_long = [op(put("a", str(i)), None, 2 * i, 2 * i + 1) for i in range(5000)]
    bad = [op(put("b", "1"), None, 0, 1), op(get("b"), None, 2, 3)]
    alone = check(cheap_but_long, MODEL)
    result = check(cheap_but_long + bad, MODEL)
    assert result.verdict is Verdict.ILLEGAL and result.failing_partition == 1
    assert result.steps < alone.steps


def test_search_order_does_not_depend_on_input_order() -> None:
    ops = [
        op(put("x", "1"), None, 0, 10),
        op(put("x", "2"), None, 0, 10, client=1),
        op(get("x"), "1", 11, 12),
        op(get("x"), "2", 13, 14),
    ]
    assert verdict(ops) is Verdict.ILLEGAL
    assert verdict(list(reversed(ops))) is Verdict.ILLEGAL


# --- random histories ------------------------------------------------------------------------

KEYS = ["a", "b"]
VALUES = ["1", "2", "3"]

kv_inputs = st.one_of(
    st.builds(put, st.sampled_from(KEYS), st.sampled_from(VALUES)),
    st.builds(get, st.sampled_from(KEYS)),
    st.builds(
        cas, st.sampled_from(KEYS), st.sampled_from([None, *VALUES]), st.sampled_from(VALUES)
    ),
    st.builds(delete, st.sampled_from(KEYS)),
)


def run_on_dict(inputs: Sequence[KvInput]) -> list[object]:
    """Execute the inputs one after another against a plain dict; returns the outputs."""
    store: dict[str, str] = {}
    outputs: list[object] = []
    for inp in inputs:
        current = store.get(inp.key)
        if inp.op == "get":
            outputs.append(current)
        elif inp.op == "cas":
            swapped = current == inp.expected
            if swapped and inp.value is not None:
                store[inp.key] = inp.value
            outputs.append(swapped)
        elif inp.op == "put" and inp.value is not None:
            store[inp.key] = inp.value
            outputs.append(None)
        else:
            store.pop(inp.key, None)
            outputs.append(None)
    return outputs


def sequential(inputs: Sequence[KvInput]) -> list[Operation]:
    pairs = enumerate(zip(inputs, run_on_dict(inputs), strict=True))
    return [op(i, o, 2 * n, 2 * n + 1, client=n % 3) for n, (i, o) in pairs]


@settings(max_examples=200, deadline=None)
@given(st.lists(kv_inputs, min_size=1, max_size=40), st.data())
def test_a_sequential_run_is_linearizable_and_a_forged_read_is_not(
    inputs: list[KvInput], data: st.DataObject
) -> None:
    ops = sequential(inputs)
    assert verdict(ops) is Verdict.OK
    reads = [n for n, o in enumerate(ops) if isinstance(o.input, KvInput) and o.input.op == "get"]
    if reads:
        n = data.draw(st.sampled_from(reads))
        forged = [*ops[:n], replace(ops[n], output="never-written"), *ops[n + 1 :]]
        assert verdict(forged) is Verdict.ILLEGAL


@settings(max_examples=200, deadline=None)
@given(st.lists(kv_inputs, min_size=1, max_size=30), st.data())
def test_widening_intervals_around_a_sequential_run_keeps_it_linearizable(
    inputs: list[KvInput], data: st.DataObject
) -> None:
    """Each op takes effect at time 10n; its call may start earlier and its return end later."""
    ops = []
    for n, (inp, out) in enumerate(zip(inputs, run_on_dict(inputs), strict=True)):
        call = 10 * n - data.draw(st.integers(0, 25))
        ret = 10 * n + data.draw(st.integers(0, 25))
        ops.append(op(inp, out, call, ret, client=n))
    assert verdict(ops) is Verdict.OK


def brute_force(ops: Sequence[Operation]) -> bool:
    """Try every total order that respects real time (closed intervals, ret < call forces it)."""
    for order in itertools.permutations(range(len(ops))):
        position = {i: p for p, i in enumerate(order)}
        if any(
            ops[j].ret < ops[i].call and position[j] > position[i]
            for i in range(len(ops))
            for j in range(len(ops))
        ):
            continue
        states: dict[str, str | None] = {}
        for i in order:
            inp = ops[i].input
            assert isinstance(inp, KvInput)
            legal, states[inp.key] = MODEL.step(states.get(inp.key), inp, ops[i].output)
            if not legal:
                break
        else:
            return True
    return False


@st.composite
def random_histories(draw: st.DrawFn) -> list[Operation]:
    ops = []
    for client in range(draw(st.integers(1, 6))):
        inp = draw(kv_inputs)
        output: object
        if inp.op == "get":
            output = draw(st.sampled_from([None, *VALUES[:2], UNKNOWN_OUTPUT]))
        elif inp.op == "cas":
            output = draw(st.sampled_from([True, False, UNKNOWN_OUTPUT]))
        else:
            output = draw(st.sampled_from([None, UNKNOWN_OUTPUT]))
        call = draw(st.integers(0, 8))
        ret = INF if output is UNKNOWN_OUTPUT else call + draw(st.integers(0, 4))
        ops.append(op(inp, output, call, ret, client=client))
    return ops


@settings(max_examples=400, deadline=None)
@given(random_histories())
def test_agrees_with_brute_force_on_small_random_histories(ops: list[Operation]) -> None:
    expected = Verdict.OK if brute_force(ops) else Verdict.ILLEGAL
    assert verdict(ops) is expected
