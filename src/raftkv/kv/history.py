"""A bounded, in-memory history of change events for watches.

Local to a replica (not replicated, not in snapshots): after a restart or a snapshot restore
the history starts at the current revision, and older watch revisions are reported compacted.
"""

from __future__ import annotations

from bisect import bisect_left

from raftkv.errors import BadRequest
from raftkv.kv.model import Event


class Compacted(BadRequest):
    """The requested revision is older than the history kept; watch from first_revision."""

    def __init__(self, revision: int, first_revision: int) -> None:
        super().__init__(
            f"revision {revision} is compacted; the oldest revision available is {first_revision}"
        )
        self.revision = revision
        self.first_revision = first_revision


def event_cost(event: Event) -> int:
    """Approximate bytes an event holds (keys and values dominate)."""
    prev = event.prev
    size = 64 + len(event.kv.key) + len(event.kv.value)
    return size if prev is None else size + len(prev.value)


class EventHistory:
    def __init__(self, max_revisions: int, max_bytes: int, first_revision: int = 1) -> None:
        self._max_revisions = max_revisions
        self._max_bytes = max_bytes
        # Invariant: every event with revision >= first_revision is held, in order; revisions
        # are contiguous, one group per mutating command, stored from _head on.
        self._first = first_revision
        self._revs: list[int] = []
        self._groups: list[tuple[Event, ...]] = []
        self._costs: list[int] = []
        self._head = 0
        self._bytes = 0

    @property
    def first_revision(self) -> int:
        return self._first

    def append(self, revision: int, events: tuple[Event, ...]) -> None:
        cost = sum(event_cost(e) for e in events)
        self._revs.append(revision)
        self._groups.append(events)
        self._costs.append(cost)
        self._bytes += cost
        while len(self._revs) - self._head > self._max_revisions or self._bytes > self._max_bytes:
            self._bytes -= self._costs[self._head]
            self._first = self._revs[self._head] + 1
            self._head += 1
        if self._head > 1024 and self._head * 2 > len(self._revs):  # amortized O(1) trimming
            del self._revs[: self._head], self._groups[: self._head], self._costs[: self._head]
            self._head = 0

    def since(self, revision: int, prefix: str = "") -> list[Event]:
        """Events at revision >= `revision` on keys starting with prefix, oldest first."""
        if revision < 1:
            raise BadRequest(f"revision must be >= 1, got {revision}")
        if revision < self._first:
            raise Compacted(revision, self._first)
        start = bisect_left(self._revs, revision, lo=self._head)
        return [e for g in self._groups[start:] for e in g if e.kv.key.startswith(prefix)]
