"""The in-memory Raft log of one node, with its commit, apply, written and stable marks.

Invariants: snapshot_index <= applied <= committed <= last_index; applied <= stable;
snapshot_index <= stable <= written <= last_index; entries[i].index == snapshot_index + 1 + i;
committed entries are never truncated. `written`: entries through it were handed to storage;
`stable`: entries through it are known durable (storage acknowledged them).
"""

from __future__ import annotations

from collections.abc import Sequence

from raftkv.core.types import Entry


class LogInvariantError(AssertionError):
    """The core was asked to break a log invariant: a bug, never a user error."""


class RaftLog:
    def __init__(
        self,
        entries: Sequence[Entry] = (),
        *,
        snapshot_index: int = 0,
        snapshot_term: int = 0,
        committed: int = 0,
        applied: int = 0,
    ) -> None:
        self.snapshot_index = snapshot_index
        self.snapshot_term = snapshot_term
        self.entries: list[Entry] = list(entries)
        for offset, entry in enumerate(self.entries):
            if entry.index != snapshot_index + 1 + offset:
                raise LogInvariantError(f"entries are not contiguous at {entry.index}")
        # A commit mark recorded beyond what survived on disk is clamped: commit is volatile.
        self.committed = max(min(committed, self.last_index()), snapshot_index)
        self.applied = max(min(applied, self.committed), snapshot_index)
        # Everything given at construction came from storage, so it is already stable.
        self.stable = self.written = self.last_index()

    # --- queries ----------------------------------------------------------------------

    def last_index(self) -> int:
        return self.entries[-1].index if self.entries else self.snapshot_index

    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.snapshot_term

    def first_index(self) -> int:
        return self.snapshot_index + 1

    def term(self, index: int) -> int | None:
        """The term of the entry at index; None if compacted away or not yet in the log."""
        if index == self.snapshot_index:
            return self.snapshot_term
        if index < self.snapshot_index or index > self.last_index():
            return None
        return self.entries[index - self.snapshot_index - 1].term

    def entry(self, index: int) -> Entry:
        return self.entries[index - self.snapshot_index - 1]

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Election restriction (paper 5.4.1): is a log ending at (index, term) at least as
        up to date as ours?"""
        return (last_term, last_index) >= (self.last_term(), self.last_index())

    def slice(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """Entries [lo, hi), cut after max_bytes of data (always at least one entry)."""
        hi = min(hi, self.last_index() + 1)
        if lo >= hi:
            return []
        base = self.snapshot_index + 1
        out: list[Entry] = []
        size = 0
        for entry in self.entries[lo - base : hi - base]:
            size += len(entry.data)
            if out and size > max_bytes:
                break
            out.append(entry)
        return out

    def unwritten(self) -> list[Entry]:
        """Entries not yet handed to storage."""
        return self.entries[self.written - self.snapshot_index :]

    def find_conflict_by_term(self, index: int, term: int) -> int:
        """The largest index <= index whose term is <= term (fast log backtracking)."""
        index = min(index, self.last_index())
        while index > self.snapshot_index:
            entry_term = self.term(index)
            if entry_term is not None and entry_term <= term:
                return index
            index -= 1
        return self.snapshot_index

    # --- mutations ----------------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> None:
        """Leader append: entries continue the log exactly."""
        for entry in entries:
            if entry.index != self.last_index() + 1:
                raise LogInvariantError(f"append of {entry.index} after {self.last_index()}")
            self.entries.append(entry)

    def maybe_append(self, prev_index: int, entries: Sequence[Entry]) -> tuple[int, int | None]:
        """Follower append after a successful consistency check at prev_index.

        Entries already present are skipped; the first conflicting entry and everything
        after it is replaced (paper Figure 2, receiver rule 3). Returns (last new index,
        truncated-from index or None).
        """
        truncated_from: int | None = None
        for offset, entry in enumerate(entries):
            existing = self.term(entry.index)
            if existing == entry.term:
                continue
            if existing is not None:
                if entry.index <= self.committed:
                    raise LogInvariantError(
                        f"conflict at committed index {entry.index} (committed {self.committed})"
                    )
                del self.entries[entry.index - self.snapshot_index - 1 :]
                self.stable = min(self.stable, entry.index - 1)
                self.written = min(self.written, entry.index - 1)
                truncated_from = entry.index
            self.append(entries[offset:])
            break
        return prev_index + len(entries), truncated_from

    def commit_to(self, index: int) -> bool:
        """Raise the commit mark (never lower it). Returns True if it moved."""
        if index <= self.committed:
            return False
        if index > self.last_index():
            raise LogInvariantError(f"commit {index} beyond last index {self.last_index()}")
        self.committed = index
        return True

    def written_to(self, index: int) -> None:
        """Entries through index were handed to storage."""
        self.written = max(self.written, min(index, self.last_index()))

    def stable_to(self, index: int, term: int) -> None:
        """Entries through (index, term) are on disk, unless the log changed since (then a
        later write, acknowledged later, covers what replaced them)."""
        if self.term(index) == term and index > self.stable:
            self.stable = index

    def compact_to(self, index: int, term: int) -> None:
        """Drop entries through index (covered by a snapshot at (index, term))."""
        if not self.snapshot_index <= index <= self.applied:
            raise LogInvariantError(f"compact to {index} outside [{self.snapshot_index}, applied]")
        if self.term(index) != term:
            raise LogInvariantError(
                f"compact to ({index}, {term}) but the log has {self.term(index)}"
            )
        del self.entries[: index - self.snapshot_index]
        self.snapshot_index, self.snapshot_term = index, term
        self.stable = max(self.stable, index)
        self.written = max(self.written, index)

    def reset_to_snapshot(self, index: int, term: int) -> None:
        """Replace the whole log by a snapshot from the leader (nothing of ours matches it).
        Called once the snapshot is durable: everything the log now holds is stable."""
        if index <= self.committed:
            raise LogInvariantError(f"snapshot {index} is not beyond commit {self.committed}")
        self.entries = []
        self.snapshot_index, self.snapshot_term = index, term
        self.committed = self.applied = self.stable = self.written = index

    def applied_to(self, index: int) -> None:
        if not self.applied <= index <= min(self.committed, self.stable):
            raise LogInvariantError(
                f"applied {index} outside [{self.applied}, min({self.committed}, {self.stable})]"
            )
        self.applied = index

    def applicable(self, limit: int) -> list[Entry]:
        """Committed entries that are durable here and not applied yet (at most limit)."""
        hi = min(self.committed, self.stable, self.applied + limit)
        return [self.entry(i) for i in range(self.applied + 1, hi + 1)]
