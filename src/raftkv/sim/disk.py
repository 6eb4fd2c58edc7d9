"""A node's simulated disk: what survives a crash. Same semantics as raftkv.storage:
one persist per Ready is atomic and durable; anything not yet persisted is lost on a crash.
A snapshot replaces the log prefix it covers (or the whole log, when installed from a leader).
"""

from __future__ import annotations

from collections.abc import Sequence

from raftkv.core.types import Entry, HardState, Snapshot


class SimDisk:
    def __init__(self) -> None:
        self.hard_state = HardState()
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []  # entries[i].index == base + 1 + i
        self.syncs = 0

    @property
    def base(self) -> int:
        return self.snapshot.index if self.snapshot is not None else 0

    def persist(
        self,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot: Snapshot | None = None,
    ) -> None:
        if snapshot is not None:
            self.install(snapshot)
        if entries:
            first = entries[0].index
            if first > self.base + len(self.entries) + 1 or first <= self.base:
                raise AssertionError(f"append at {first} outside the log on disk")
            del self.entries[first - self.base - 1 :]
            self.entries.extend(entries)
        if hard_state is not None:
            self.hard_state = hard_state
        self.syncs += 1

    def install(self, snapshot: Snapshot) -> None:
        """Keep the log suffix after the snapshot if it continues it, else drop the log."""
        keep = [e for e in self.entries if e.index > snapshot.index]
        at = [e for e in self.entries if e.index == snapshot.index]
        self.entries = keep if at and at[0].term == snapshot.term else []
        self.snapshot = snapshot

    def has(self, index: int, term: int) -> bool:
        """Is (index, term) durable here? A snapshot holds only committed entries, so any
        index it covers counts as present."""
        if index <= self.base:
            return True
        offset = index - self.base - 1
        return offset < len(self.entries) and self.entries[offset].term == term
