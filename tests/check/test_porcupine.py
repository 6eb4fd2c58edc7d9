"""Porcupine's own test data: every verdict reproduced, the parsers, and the :info traps."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pytest

from raftkv.check.history import UNKNOWN_OUTPUT, Operation
from raftkv.check.linearizability import Verdict, check
from raftkv.check.models import (
    AppendOp,
    EtcdRegisterModel,
    KvAppendInput,
    KvAppendModel,
    RegisterInput,
    RegisterOp,
)
from raftkv.check.porcupine import parse_jepsen_log, parse_kv_log

# Porcupine's histories, kept in the repository (tests/data/README.md: source and license).
DATA = Path(__file__).resolve().parents[1] / "data" / "porcupine"


def _expected() -> list[tuple[str, str]]:
    rows = [line.split("\t") for line in (DATA / "expected.tsv").read_text().splitlines()]
    return [(row[0], row[1]) for row in rows if row and not row[0].startswith("#")]


def _table() -> dict[str, list[str]]:
    """EXPECTED.md's per-file table: file -> its cells."""
    rows = [line.strip("|").split("|") for line in (DATA / "EXPECTED.md").read_text().splitlines()]
    return {cells[0].strip(): [c.strip() for c in cells] for cells in rows if len(cells) >= 10}


def _parse(name: str) -> list[Operation]:
    text = (DATA / name).read_text()
    return parse_jepsen_log(text) if name.startswith("jepsen/") else parse_kv_log(text)


def _check(name: str, ops: list[Operation], max_steps: int | None = None) -> Verdict:
    model = EtcdRegisterModel() if name.startswith("jepsen/") else KvAppendModel()
    return check(ops, model, max_steps=max_steps).verdict


def test_the_oracle_has_all_108_cases() -> None:
    cases = _expected()
    assert len(cases) == 108
    assert sum(verdict == "linearizable" for _, verdict in cases) == 23 + 3


@pytest.mark.parametrize(("name", "expected"), _expected(), ids=[n for n, _ in _expected()])
def test_verdict_matches_porcupine(name: str, expected: str) -> None:
    assert _check(name, _parse(name)).value == expected


@pytest.mark.parametrize("name", [n for n, _ in _expected()])
def test_parse_matches_the_table(name: str) -> None:
    """Operation, :info, read-timeout, process and key counts agree with EXPECTED.md."""
    cells = _table()[name]
    invoked, info, read_timeouts, processes, keys = (int(c) for c in cells[4:9])
    ops = _parse(name)
    assert len(ops) == invoked
    assert sum(op.is_open for op in ops) == info
    assert all(op.output is UNKNOWN_OUTPUT for op in ops if op.is_open)
    closed_unknown = [op for op in ops if not op.is_open and op.output is UNKNOWN_OUTPUT]
    assert len(closed_unknown) == read_timeouts
    assert len({op.client for op in ops}) == processes
    if name.startswith("kv/"):
        assert len({op.input.key for op in ops if isinstance(op.input, KvAppendInput)}) == keys


def test_c50_bad_is_refuted_within_a_small_step_budget() -> None:
    """Two of its keys explode a sequential search; interleaving must still refute it fast."""
    result = check(_parse("kv/c50-bad.txt"), KvAppendModel(), max_steps=2_000_000)
    assert result.verdict is Verdict.ILLEGAL
    assert result.partitions == 10
    assert result.failing_partition is not None
    assert "not linearizable" in result.explanation


def test_the_empty_log_095_is_trivially_linearizable() -> None:
    ops = parse_jepsen_log((DATA / "jepsen" / "etcd_095.log").read_text())
    assert ops == []
    result = check(ops, EtcdRegisterModel())
    assert (result.verdict, result.partitions) == (Verdict.OK, 0)


# --- the :info traps (EXPECTED.md section 1) -------------------------------------------------

_GOOD = (
    "002 005 007 018 025 031 038 045 048 049 051 053 056 067 075 076 080 087 092 098 100 101 102"
)
_FLIPS_WHEN_DROPPED = set(_GOOD.split()) - {"038", "067", "101"}
_FLIPS_WHEN_CLOSED = set(_GOOD.split()) - {"045", "102"}
_INFO = re.compile(r"^INFO\s+jepsen\.util\s+-\s+(\d+)\s+:info\s")


def _mishandle_info(text: str, how: str) -> list[Operation]:
    """Parse correctly, then treat each :info op the wrong way: drop it, or close it there."""
    info_line = {
        int(m[1]): i for i, line in enumerate(text.splitlines()) if (m := _INFO.match(line))
    }
    ops: list[Operation] = []
    for op in parse_jepsen_log(text):
        if not (op.is_open and op.client in info_line):
            ops.append(op)
        elif how == "close":
            ops.append(dataclasses.replace(op, ret=info_line[op.client]))
    return ops


@pytest.mark.parametrize(
    ("how", "flips"), [("drop", _FLIPS_WHEN_DROPPED), ("close", _FLIPS_WHEN_CLOSED)]
)
def test_mishandling_info_ops_flips_linearizable_histories(how: str, flips: set[str]) -> None:
    assert (len(_FLIPS_WHEN_DROPPED), len(_FLIPS_WHEN_CLOSED)) == (20, 21)
    flipped: set[str] = set()
    for number in _GOOD.split():
        name = f"jepsen/etcd_{number}.log"
        wrong = _mishandle_info((DATA / name).read_text(), how)
        verdict = _check(name, wrong, max_steps=5_000_000)
        assert verdict is not Verdict.UNKNOWN
        if verdict is Verdict.ILLEGAL:
            flipped.add(number)
    assert flipped == flips


# --- parser unit tests (inline logs) ----------------------------------------------------------

_JEPSEN_LOG = (
    "INFO  jepsen.util - 1\t:invoke\t:write\t3\n"
    "INFO  jepsen.util - 2   :invoke :cas    [3 4]\n"
    "INFO  jepsen.util - 1\t:ok\t:write\t3\n"
    "some unrelated line\n"
    "INFO  jepsen.util - 2\t:info\t:cas\t:timed-out\n"
    "INFO  jepsen.util - 3\t:invoke\t:read\tnil\n"
    "INFO  jepsen.util - 4\t:invoke\t:read\tnil\n"
    "INFO  jepsen.util - 3\t:ok\t:read\tnil\n"
    "INFO  jepsen.util - 4\t:fail\t:read\t:timed-out\n"
    "INFO  jepsen.util - 5\t:invoke\t:cas\t[1 2]\n"
    "INFO  jepsen.util - 5\t:fail\t:cas\t[1 2]\n"
    "INFO  jepsen.util - 6\t:invoke\t:read\tnil\n"
    "INFO  jepsen.util - 6\t:ok\t:read\t3\n"
)


def test_parse_jepsen_log_semantics() -> None:
    write, cas, read_nil, read_timeout, cas_fail, read3 = parse_jepsen_log(_JEPSEN_LOG)
    assert write == Operation(1, RegisterInput(RegisterOp.WRITE, 3), None, 0, 2)
    # :info is matched by no pattern: the cas stays open to the end with an unknown output.
    assert cas == Operation(2, RegisterInput(RegisterOp.CAS, 4, 3), UNKNOWN_OUTPUT, 1, math.inf)
    assert read_nil == Operation(3, RegisterInput(RegisterOp.READ), None, 5, 7)
    # :fail :read :timed-out closes the read at that line, output unknown.
    assert read_timeout == Operation(4, RegisterInput(RegisterOp.READ), UNKNOWN_OUTPUT, 6, 8)
    # :fail :cas is a definite outcome: the compare failed.
    assert cas_fail.output is False
    assert read3.output == 3


def test_parse_jepsen_log_rejects_inconsistent_logs() -> None:
    with pytest.raises(ValueError, match="idle process"):
        parse_jepsen_log("INFO  jepsen.util - 1\t:ok\t:write\t3\n")
    with pytest.raises(ValueError, match="while busy"):
        parse_jepsen_log("INFO  jepsen.util - 1\t:invoke\t:write\t3\n" * 2)
    with pytest.raises(ValueError, match="completes a"):
        parse_jepsen_log(
            "INFO  jepsen.util - 1\t:invoke\t:write\t3\nINFO  jepsen.util - 1\t:ok\t:read\t3"
        )


def test_parse_kv_log_takes_the_key_from_the_call_and_leaves_open_ops_open() -> None:
    text = (
        '{:process 0, :type :invoke, :f :append, :key "7", :value "x 0 0 y"}\n'
        '{:process 1, :type :invoke, :f :get, :key "7", :value nil}\n'
        '{:process 0, :type :ok, :f :append, :key "7", :value "x 0 0 y"}\n'
        '{:process 1, :type :ok, :f :get, :key "7", :value "x 0 0 y"}\n'
        '{:process 1, :type :invoke, :f :put, :key "3", :value "v"}\n'
    )
    append, get, put = parse_kv_log(text)
    assert append == Operation(0, KvAppendInput(AppendOp.APPEND, "7", "x 0 0 y"), None, 0, 2)
    assert get == Operation(1, KvAppendInput(AppendOp.GET, "7"), "x 0 0 y", 1, 3)
    assert put == Operation(1, KvAppendInput(AppendOp.PUT, "3", "v"), UNKNOWN_OUTPUT, 4)
