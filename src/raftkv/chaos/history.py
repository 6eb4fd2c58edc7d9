"""What the chaos clients did: one OpRecord per request, and its form for the checker.

Times are seconds since the run started, from time.monotonic(). Outcomes follow
raftkv.check: OK (definite output), FAIL (definitely no effect: dropped from the checked
history) and UNKNOWN (a write that may or may not have taken effect: open to the end).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from raftkv.check import Operation, OpOutcome, make_operation
from raftkv.check.models import KvInput

Output = str | bool | None  # get: the value (None: absent); cas: swapped; put: None

FINAL_CLIENT = -1  # the client id of the verification reads made after healing


@dataclass(slots=True)
class OpRecord:
    id: int
    client: int
    kind: str  # "get" | "put" | "cas"
    key: str
    value: str | None = None  # put / cas: the value written
    expected: str | None = None  # cas: the value compared against (None: the key is absent)
    consistency: str = ""  # get: "linearizable" or "lease"
    call: float = 0.0
    ret: float | None = None  # None while pending
    outcome: OpOutcome | None = None  # None while pending
    output: Output = None
    error: str = ""  # for FAIL / UNKNOWN: the exception type and message

    @property
    def is_write(self) -> bool:
        return self.kind != "get"

    @property
    def latency(self) -> float | None:
        return None if self.ret is None else self.ret - self.call

    @property
    def acknowledged(self) -> bool:
        """A write that definitely took effect: a put answered OK, or a cas that swapped."""
        if self.outcome is not OpOutcome.OK:
            return False
        return self.kind == "put" or (self.kind == "cas" and self.output is True)

    def finish(
        self, outcome: OpOutcome, ret: float, output: Output = None, error: str = ""
    ) -> None:
        # Invariant: a record is finished once; a get is never UNKNOWN (it has no effect).
        assert self.outcome is None, f"op {self.id} finished twice"
        if outcome is OpOutcome.UNKNOWN and not self.is_write:
            outcome = OpOutcome.FAIL
        self.outcome, self.ret, self.output, self.error = outcome, ret, output, error

    def to_input(self) -> KvInput:
        return KvInput(self.kind, self.key, self.value, self.expected)

    def to_operation(self) -> Operation | None:
        """The checker's operation; None when it definitely had no effect (FAIL)."""
        outcome = self.outcome if self.outcome is not None else OpOutcome.UNKNOWN
        if outcome is OpOutcome.UNKNOWN and not self.is_write:
            return None
        ret = self.ret if self.ret is not None else self.call
        return make_operation(self.client, self.to_input(), self.output, self.call, ret, outcome)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": self.id,
            "client": self.client,
            "kind": self.kind,
            "key": self.key,
            "call": round(self.call, 6),
            "ret": None if self.ret is None else round(self.ret, 6),
            "outcome": None if self.outcome is None else self.outcome.value,
            "output": self.output,
        }
        if self.kind != "get":
            doc["value"] = self.value
        if self.kind == "cas":
            doc["expected"] = self.expected
        if self.consistency:
            doc["consistency"] = self.consistency
        if self.error:
            doc["error"] = self.error
        return doc


def to_operations(records: Iterable[OpRecord]) -> list[Operation]:
    ops = [op for r in records if (op := r.to_operation()) is not None]
    ops.sort(key=lambda op: op.call)
    return ops


def outcome_counts(records: Iterable[OpRecord]) -> dict[str, dict[str, int]]:
    """{kind: {outcome: count}} over finished records, plus a "total" row."""
    counts: dict[str, Counter[str]] = {}
    for r in records:
        if r.outcome is None:
            continue
        for row in (r.kind, "total"):
            counts.setdefault(row, Counter())[r.outcome.value] += 1
    return {
        kind: {o.value: c[o.value] for o in OpOutcome}
        for kind, c in sorted(counts.items(), key=lambda kv: kv[0] == "total")
    }
