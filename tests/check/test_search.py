"""The single-partition search: resumable, and its linearization is a legal witness."""

from __future__ import annotations

from raftkv.check.history import UNKNOWN_OUTPUT, Operation
from raftkv.check.models import KvInput, KvRegisterModel
from raftkv.check.search import Search, SearchVerdict

MODEL = KvRegisterModel()


def _history() -> list[Operation]:
    put = KvInput("put", "k", "1")
    get = KvInput("get", "k")
    return [
        Operation(0, get, "1", 3, 4),
        Operation(1, put, None, 0, 10),
        Operation(2, KvInput("cas", "k", "2", "1"), UNKNOWN_OUTPUT, 1),
        Operation(3, get, "2", 11, 12),
    ]


def test_running_one_step_at_a_time_reaches_the_same_verdict() -> None:
    whole = Search(_history(), MODEL)
    assert whole.run(10_000) is SearchVerdict.OK
    stepwise = Search(_history(), MODEL)
    rounds = 0
    while (verdict := stepwise.run(1)) is None:
        rounds += 1
    assert verdict is SearchVerdict.OK
    assert stepwise.steps == whole.steps == rounds + 1
    assert stepwise.run(1) is SearchVerdict.OK  # decided: stays decided, no more steps
    assert stepwise.steps == whole.steps


def test_linearization_is_a_legal_real_time_order() -> None:
    ops = _history()
    search = Search(ops, MODEL)
    assert search.run(10_000) is SearchVerdict.OK
    order = search.linearization()
    assert sorted(order) == list(range(len(ops)))
    state = MODEL.init()
    for position, i in enumerate(order):
        legal, state = MODEL.step(state, ops[i].input, ops[i].output)
        assert legal
        assert all(ops[j].ret >= ops[i].call for j in order[position + 1 :])


def test_illegal_search_keeps_its_deepest_prefix() -> None:
    ops = [*_history(), Operation(4, KvInput("get", "k"), "1", 13, 14)]
    search = Search(ops, MODEL)
    assert search.run(10_000) is SearchVerdict.ILLEGAL
    assert len(search.best_prefix) == 4
    assert 4 not in search.best_prefix
