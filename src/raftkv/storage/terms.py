"""Run-length map index -> term for the entries after the snapshot (terms change rarely)."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from raftkv.core.types import Entry


class TermRuns:
    """Invariant: starts is strictly increasing; the run at starts[i] has terms[i] and covers
    indexes up to starts[i + 1] - 1 (the last run up to the log's last index)."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.terms: list[int] = []

    def term_at(self, index: int) -> int | None:
        """Term of the run covering index; the caller checks index is inside the log."""
        pos = bisect.bisect_right(self.starts, index) - 1
        return self.terms[pos] if pos >= 0 else None

    def truncate_from(self, index: int) -> None:
        """Forget every index >= index."""
        pos = bisect.bisect_left(self.starts, index)
        del self.starts[pos:]
        del self.terms[pos:]

    def drop_through(self, index: int) -> None:
        """Forget runs that end at or before index (the run covering index + 1 stays)."""
        pos = bisect.bisect_right(self.starts, index + 1) - 1
        if pos > 0:
            del self.starts[:pos]
            del self.terms[:pos]

    def append(self, entries: Sequence[Entry]) -> None:
        """Record entries, which must directly follow what is recorded."""
        for entry in entries:
            if not self.terms or self.terms[-1] != entry.term:
                self.starts.append(entry.index)
                self.terms.append(entry.term)

    def clear(self) -> None:
        self.starts.clear()
        self.terms.clear()
