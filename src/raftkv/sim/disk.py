"""A node's simulated disk: what survives a crash. Same semantics as raftkv.storage:
one persist per Ready is atomic and durable; anything not yet persisted is lost on a crash.
"""

from __future__ import annotations

from collections.abc import Sequence

from raftkv.core.types import Entry, HardState


class SimDisk:
    def __init__(self) -> None:
        self.hard_state = HardState()
        self.entries: list[Entry] = []  # entries[i].index == i + 1 (no compaction in the sim)
        self.syncs = 0

    def persist(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        if entries:
            first = entries[0].index
            if first > len(self.entries) + 1:
                raise AssertionError(f"gap on disk: append at {first} after {len(self.entries)}")
            del self.entries[first - 1 :]
            self.entries.extend(entries)
        if hard_state is not None:
            self.hard_state = hard_state
        self.syncs += 1

    def has(self, index: int, term: int) -> bool:
        return index <= len(self.entries) and self.entries[index - 1].term == term
