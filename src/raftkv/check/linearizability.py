"""check(): is a history linearizable with respect to a model?

The model's partitions are searched interleaved, round-robin, with a per-round step quantum
that doubles each round: cheap partitions finish early, an illegal partition is found after
about (partitions x its own cost) steps even if another partition would explode, and the
first ILLEGAL partition decides the whole history. A total step budget turns a search that
would not finish into UNKNOWN, never into OK.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from raftkv.check.explain import explain_illegal
from raftkv.check.history import Operation
from raftkv.check.model import Model
from raftkv.check.search import Search, SearchVerdict

_FIRST_QUANTUM = 1024  # steps per partition in the first round; doubles every round


class Verdict(enum.Enum):
    OK = "linearizable"
    ILLEGAL = "not-linearizable"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """verdict; how many partitions; total search steps; the index of the first partition found
    illegal (ILLEGAL only); and a human-readable explanation."""

    verdict: Verdict
    partitions: int
    steps: int
    failing_partition: int | None
    explanation: str

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK


def check(
    ops: Sequence[Operation], model: Model[Any], *, max_steps: int | None = None
) -> CheckResult:
    """Check a history. max_steps bounds the total search steps over all partitions."""
    if max_steps is not None and max_steps < 0:
        raise ValueError("max_steps must be >= 0")
    parts = [p for p in model.partition(ops) if p]
    searches = [Search(p, model) for p in parts]
    pending = list(range(len(searches)))
    quantum = _FIRST_QUANTUM
    used = 0
    while pending:
        undecided: list[int] = []
        for k, index in enumerate(pending):
            allowance = quantum if max_steps is None else min(quantum, max_steps - used)
            if allowance <= 0:
                undecided.extend(pending[k:])
                return _unknown(len(parts), used, undecided, max_steps)
            search = searches[index]
            before = search.steps
            verdict = search.run(allowance)
            used += search.steps - before
            if verdict is SearchVerdict.ILLEGAL:
                text = explain_illegal(model, search.ops, search.best_prefix, index, len(parts))
                return CheckResult(Verdict.ILLEGAL, len(parts), used, index, text)
            if verdict is None:
                undecided.append(index)
        pending = undecided
        quantum *= 2
    explanation = f"linearizable: {len(parts)} partition(s), {used} search steps"
    return CheckResult(Verdict.OK, len(parts), used, None, explanation)


def _unknown(partitions: int, used: int, undecided: list[int], budget: int | None) -> CheckResult:
    listed = ", ".join(str(i + 1) for i in sorted(undecided))
    explanation = (
        f"unknown: step budget {budget} exhausted after {used} steps; "
        f"{len(undecided)} of {partitions} partition(s) undecided ({listed})"
    )
    return CheckResult(Verdict.UNKNOWN, partitions, used, None, explanation)
