"""The Knossos EDN parser: Knossos' semantics for :ok, :fail and :info, and bad input."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from raftkv.check.history import UNKNOWN_OUTPUT, Operation
from raftkv.check.knossos import lose_outcomes, parse_knossos_edn
from raftkv.check.linearizability import Verdict, check
from raftkv.check.models import EtcdRegisterModel, RegisterInput, RegisterOp

STORED = Path(__file__).resolve().parents[1] / "data" / "knossos" / "memstress3-0.edn"
READ = RegisterInput(RegisterOp.READ)


def test_the_stored_history_parses_and_is_linearizable() -> None:
    ops = parse_knossos_edn(STORED.read_text())
    assert len(ops) == 317 - 86  # the :fail operations did not happen
    assert not any(op.is_open for op in ops)
    assert {op.client for op in ops} == set(range(10))
    assert check(ops, EtcdRegisterModel()).verdict is Verdict.OK


def test_semantics_of_each_completion() -> None:
    text = """; a comment {:process 9, :type :invoke, :f :read, :value nil}
    ({:type :invoke, :f :write, :value 0, :process 0}
     {:process 0 :type :ok :f :write :value 0}
     {:process 1, :type :invoke, :f :cas, :value [0 3]}
     {:process :nemesis, :type :info, :f :start, :value nil}
     {:process 2, :type :invoke, :f :read, :value nil}
     {:process 1, :type :info, :f :cas, :value [0 3]}
     {:process 3, :type :invoke, :f :cas, :value [5 6]}
     {:process 2, :type :ok, :f :read, :value 3}
     {:process 3, :type :fail, :f :cas, :value [5 6]}
     {:process 4, :type :invoke, :f :write, :value 7})
    """
    write, cas, read, never = parse_knossos_edn(text)
    assert write == Operation(0, RegisterInput(RegisterOp.WRITE, 0), None, 0, 1)
    # :info: unknown outcome, open to the end (ret = inf)
    assert cas == Operation(1, RegisterInput(RegisterOp.CAS, 3, 0), UNKNOWN_OUTPUT, 2, math.inf)
    assert read == Operation(2, READ, 3, 3, 6)
    # :fail (process 3) did not happen; an invocation never completed stays open
    assert never == Operation(4, RegisterInput(RegisterOp.WRITE, 7), UNKNOWN_OUTPUT, 8, math.inf)
    assert check([write, cas, read, never], EtcdRegisterModel()).verdict is Verdict.OK


def test_a_cas_that_completed_ok_swapped() -> None:
    text = (
        "[{:process 0, :type :invoke, :f :cas, :value [nil 1]}"
        " {:process 0, :type :ok, :f :cas, :value [nil 1]}]"
    )
    with pytest.raises(ValueError, match="not a register operation"):
        parse_knossos_edn(text)  # nil is no int: the subset has int values only
    (cas,) = parse_knossos_edn(text.replace("nil 1", "2 1"))
    assert cas.output is True


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("{:process 1, :type :ok, :f :read, :value 1}", "idle process 1"),
        ("{:process 1, :type :invoke, :f :read}" * 2, "invokes while busy"),
        (
            "{:process 1, :type :invoke, :f :read} {:process 1, :type :ok, :f :write, :value 1}",
            "a write completes a read",
        ),
        ("{:process 1, :type :invoke, :f :lock, :value nil}", "not a register operation"),
        (
            "{:process 1, :type :invoke, :f :read} {:process 1, :type :done, :f :read}",
            "unknown :type",
        ),
    ],
)
def test_inconsistent_histories_are_refused(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_knossos_edn(text)


def test_lose_outcomes_opens_the_first_operations_by_call() -> None:
    ops = [
        Operation(0, READ, 1, 5, 6),
        Operation(1, RegisterInput(RegisterOp.WRITE, 1), None, 0, 7),
        Operation(2, READ, 1, 8, 9),
    ]
    lost = lose_outcomes(ops, 2)
    assert lost[2] == ops[2]
    for i in (0, 1):
        assert lost[i].is_open and lost[i].output is UNKNOWN_OUTPUT
        assert (lost[i].client, lost[i].input, lost[i].call) == (i, ops[i].input, ops[i].call)
