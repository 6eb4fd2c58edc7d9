"""Linearizability checker benchmark: histories with many operations that never returned.

    python bench/checker_bench.py [--cap-s 60] [--only NAME] [--quick] [--out bench/CHECKER.md]

Every history is deterministic (parsed data or a seeded generator) and is one partition,
searched with raftkv.check.search.Search in slices of 100,000 steps until it decides or
--cap-s seconds have passed (then the verdict is "undecided" and the steps are those reached).

- knossos-N-stale / knossos-N-ok: tests/data/knossos/memstress3-0.edn (a Jepsen cas-register
  history from Knossos' test data, 231 operations) with its first N operations open (never
  returned) and its last read altered to 3 (stale: not linearizable) or to 4 (linearizable:
  only the open write of 4 explains it).
- powercut-unique-C: raftkv's workload shape (KvRegisterModel, one key, put/get/cas with unique
  values, cas on recently written values), 1,000 operations by 10 clients; C power cuts, each
  leaving every write in flight open (it takes effect with probability 1/2 unless it already
  had) and dropping the reads in flight. -stale appends a read of an overwritten value.
- powercut-small-C: the same with Jepsen's register (values 0..4: many equal writes); -bad
  appends a read of 5, which nothing writes: the search must exhaust everything before it.

The figures are the search's steps (definite candidates tried, open operations taken,
backtracks) and wall seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raftkv.check.history import UNKNOWN_OUTPUT, Operation
from raftkv.check.knossos import lose_outcomes, parse_knossos_edn
from raftkv.check.model import Model
from raftkv.check.models import (
    EtcdRegisterModel,
    KvInput,
    KvRegisterModel,
    RegisterInput,
    RegisterOp,
)
from raftkv.check.search import Search

KNOSSOS = Path(__file__).resolve().parents[1] / "tests" / "data" / "knossos" / "memstress3-0.edn"
SLICE = 100_000


@dataclass(frozen=True)
class Case:
    name: str
    model: Model[Any]
    ops: list[Operation]

    @property
    def open_ops(self) -> int:
        return sum(op.is_open for op in self.ops)


@dataclass(frozen=True)
class Result:
    case: Case
    verdict: str
    steps: int
    seconds: float


def knossos_cases(lost: tuple[int, ...]) -> Iterator[Case]:
    base = parse_knossos_edn(KNOSSOS.read_text())
    last = max(range(len(base)), key=lambda i: base[i].call)
    for n in lost:
        for label, value in (("stale", 3), ("ok", 4)):
            ops = lose_outcomes(base, n)
            ops[last] = dataclasses.replace(ops[last], output=value)
            yield Case(f"knossos-{n}-{label}", EtcdRegisterModel(), ops)


def _unique_input(rng: random.Random, i: int, written: list[str]) -> KvInput:
    roll = rng.random()
    if roll < 0.4:
        return KvInput("put", "k", f"v{i}")
    if roll < 0.7:
        return KvInput("get", "k")
    expected = rng.choice(written[-3:]) if written and rng.random() < 0.8 else None
    return KvInput("cas", "k", f"v{i}", expected)


def _small_input(rng: random.Random, i: int, written: list[str]) -> RegisterInput:
    roll = rng.random()
    if roll < 0.5:
        return RegisterInput(RegisterOp.READ)
    if roll < 0.8:
        return RegisterInput(RegisterOp.WRITE, rng.randrange(5))
    return RegisterInput(RegisterOp.CAS, value=rng.randrange(5), expected=rng.randrange(5))


def _output(state: object, inp: object) -> object:
    """What a correct register answers."""
    if isinstance(inp, KvInput):
        return {"get": state, "cas": state == inp.expected}.get(inp.op)
    assert isinstance(inp, RegisterInput)
    return {RegisterOp.READ: state, RegisterOp.CAS: state == inp.expected}.get(inp.op)


def power_cut_history(
    seed: int, *, ops: int, cuts: int, model: Model[Any], new_input: Callable[..., object]
) -> list[Operation]:
    """A correct register's history: operation i takes effect at time 10 i, its call and return
    up to 30 before and after; every write in flight at a cut is open, every read dropped."""
    rng = random.Random(seed)
    cut_times = sorted(rng.uniform(0, 10 * ops) for _ in range(cuts))
    state = model.init()
    written: list[str] = []
    history: list[Operation] = []
    for i in range(ops):
        effect = 10 * i
        call, ret = effect - rng.uniform(0, 30), effect + rng.uniform(0, 30)
        inp = new_input(rng, i, written)
        is_read = getattr(inp, "op", None) in ("get", RegisterOp.READ)
        cut = next((t for t in cut_times if call <= t <= ret), None)
        if cut is not None:
            if not is_read:
                if effect <= cut or rng.random() < 0.5:
                    _, state = model.step(state, inp, UNKNOWN_OUTPUT)
                history.append(Operation(i % 10, inp, UNKNOWN_OUTPUT, call))
            continue
        output = _output(state, inp)
        legal, state = model.step(state, inp, output)
        assert legal
        if isinstance(inp, KvInput) and inp.value is not None and output is not False:
            written.append(inp.value)
        history.append(Operation(i % 10, inp, output, call, ret))
    return history


def _stale_value(ops: list[Operation]) -> str:
    """The value of a definite put that a later definite put, called after it returned,
    overwrote: with unique values nothing else writes it, so reading it at the end is illegal."""
    puts = [op for op in ops if isinstance(op.input, KvInput) and op.input.op == "put"]
    for op in puts:
        if not op.is_open and any(p.call > op.ret and not p.is_open for p in puts):
            assert isinstance(op.input, KvInput) and op.input.value is not None
            return op.input.value
    raise ValueError("no overwritten put")


def powercut_cases(cuts: tuple[int, ...]) -> Iterator[Case]:
    for c in cuts:
        kv = KvRegisterModel()
        ops = power_cut_history(1, ops=1000, cuts=c, model=kv, new_input=_unique_input)
        end = ops[-1].call + 1000
        stale = Operation(99, KvInput("get", "k"), _stale_value(ops), end, end + 1)
        yield Case(f"powercut-unique-{c}-ok", kv, ops)
        yield Case(f"powercut-unique-{c}-stale", kv, [*ops, stale])
    for c in cuts:
        reg = EtcdRegisterModel()
        ops = power_cut_history(1, ops=1000, cuts=c, model=reg, new_input=_small_input)
        end = ops[-1].call + 1000
        bad = Operation(99, RegisterInput(RegisterOp.READ), 5, end, end + 1)
        yield Case(f"powercut-small-{c}-ok", reg, ops)
        yield Case(f"powercut-small-{c}-bad", reg, [*ops, bad])


def run(case: Case, cap_s: float) -> Result:
    search = Search(case.ops, case.model)
    start = time.perf_counter()
    verdict = None
    while verdict is None and time.perf_counter() - start < cap_s:
        verdict = search.run(SLICE)
    seconds = time.perf_counter() - start
    return Result(case, "undecided" if verdict is None else verdict.value, search.steps, seconds)


def table(results: list[Result], cap_s: float, command: str) -> str:
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        "# raftkv linearizability checker: histories with operations that never returned",
        "",
        f"Produced by `{command}` on {when} (Python {platform.python_version()}, load average "
        f"at the end {load}). Do not edit by hand: rerun it. The histories are described in "
        "bench/checker_bench.py. Steps are definite candidates tried, open operations taken and "
        f"backtracks (the search's budget unit); seconds are wall time, capped at {cap_s:g} s "
        "per history (then the verdict is undecided).",
        "",
        "| history | ops | open | verdict | steps | seconds |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.case.name} | {len(r.case.ops)} | {r.case.open_ops} | {r.verdict} "
            f"| {r.steps:,} | {r.seconds:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cap-s", type=float, default=60.0, help="seconds per history")
    parser.add_argument("--only", default="", help="run the histories whose name contains this")
    parser.add_argument("--quick", action="store_true", help="a few small histories")
    parser.add_argument("--out", type=Path, help="also write the table (markdown) here")
    args = parser.parse_args(argv)
    if args.quick:
        cases = [*knossos_cases((16,)), *powercut_cases((4,))]
    else:
        cases = [*knossos_cases((9, 12, 16)), *powercut_cases((4, 16, 64))]
    results = []
    for case in cases:
        if args.only in case.name:
            result = run(case, args.cap_s)
            print(
                f"{case.name:28} {len(case.ops):5} ops {case.open_ops:4} open  "
                f"{result.verdict:10} {result.steps:>12,} steps {result.seconds:9.3f} s",
                flush=True,
            )
            results.append(result)
    text = table(results, args.cap_s, " ".join(["python bench/checker_bench.py", *sys.argv[1:]]))
    if args.out:
        args.out.write_text(text)
    sys.stdout.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
