"""Simulated clients: concurrent put/get/cas on a few keys, recorded as a history.

Each client runs one operation at a time. An operation is retried on another node while every
attempt was definitely rejected (not the leader, proposal overwritten, read aborted). Once an
attempt may have been appended, the client waits for its outcome; if none arrives before the
deadline the outcome is UNKNOWN and the operation stays open in the history.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from raftkv.check.history import Operation, OpOutcome, make_operation
from raftkv.check.models import KvInput


class OpKind(enum.Enum):
    PUT = "put"
    GET = "get"
    CAS = "cas"


@dataclass(slots=True)
class ClientOp:
    client: int
    op_id: int
    kind: OpKind
    key: str
    value: str | None
    expected: str | None
    lease: bool
    call: float
    deadline: float
    maybe_applied: bool = False
    done: bool = False

    def to_input(self) -> KvInput:
        return KvInput(self.kind.value, self.key, self.value, self.expected)


class Workload:
    """Generates operations and records their outcomes."""

    def __init__(
        self,
        rng: random.Random,
        *,
        clients: int,
        keys: int = 3,
        op_timeout: float = 400.0,
        lease_reads: bool = True,
    ) -> None:
        self._rng = rng
        self.clients = clients
        self.keys = [f"k{i}" for i in range(keys)]
        self.op_timeout = op_timeout
        self.lease_reads = lease_reads
        self._next_id = 0
        self._recent: dict[str, list[str]] = {k: [] for k in self.keys}
        self.history: list[Operation] = []
        self.outcomes = dict.fromkeys(OpOutcome, 0)

    def new_op(self, client: int, now: float) -> ClientOp:
        self._next_id += 1
        key = self._rng.choice(self.keys)
        roll = self._rng.random()
        value = f"c{client}.{self._next_id}"
        if roll < 0.4:
            return self._op(client, OpKind.PUT, key, value, None, now)
        if roll < 0.7:
            lease = self.lease_reads and self._rng.random() < 0.3
            return self._op(client, OpKind.GET, key, None, None, now, lease=lease)
        recent = self._recent[key]
        expected = self._rng.choice(recent[-3:]) if recent and self._rng.random() < 0.8 else None
        return self._op(client, OpKind.CAS, key, value, expected, now)

    def op(
        self, client: int, kind: OpKind, key: str, value: str | None, now: float, *, lease: bool
    ) -> ClientOp:
        """One given operation, for scripted scenarios; recorded like any other."""
        self._next_id += 1
        return self._op(client, kind, key, value, None, now, lease=lease)

    def _op(
        self,
        client: int,
        kind: OpKind,
        key: str,
        value: str | None,
        expected: str | None,
        now: float,
        *,
        lease: bool = False,
    ) -> ClientOp:
        return ClientOp(
            client, self._next_id, kind, key, value, expected, lease, now, now + self.op_timeout
        )

    def complete(self, op: ClientOp, output: object, now: float) -> None:
        """A definite answer: the operation took effect (or, for cas, definitely did not swap)."""
        if op.done:
            return
        op.done = True
        if op.kind is not OpKind.GET and op.value is not None and output is not False:
            self._recent[op.key].append(op.value)
        if isinstance(output, str):
            self._recent[op.key].append(output)
        self._record(op, OpOutcome.OK, output, now)

    def give_up(self, op: ClientOp, now: float) -> None:
        """Deadline passed: UNKNOWN if any attempt may have been appended, else FAIL."""
        if op.done:
            return
        op.done = True
        outcome = OpOutcome.UNKNOWN if op.maybe_applied else OpOutcome.FAIL
        if outcome is OpOutcome.UNKNOWN and op.value is not None:
            self._recent[op.key].append(op.value)
        self._record(op, outcome, None, now)

    def _record(self, op: ClientOp, outcome: OpOutcome, output: object, now: float) -> None:
        self.outcomes[outcome] += 1
        recorded = make_operation(op.client, op.to_input(), output, op.call, now, outcome=outcome)
        if recorded is not None:
            self.history.append(recorded)
