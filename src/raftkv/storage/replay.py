"""Rebuild the log from the newest snapshot S plus the surviving WAL segments.

Replay tracks only the live entries with index >= S.index (the rest is in the snapshot). That is
exact even after compaction, because compaction deletes a segment only when every entry live at
the next segment's start is below S (or there were none), so every live entry >= S was written
in a surviving segment. Each record is applied as the writer applied it:
- BATCH: drop entries >= entries[0].index, then append (entries below S are skipped);
- SNAPSHOT_MARK: drop entries > kept_last, then entries <= index.
At the end the snapshot itself is applied as install_snapshot would: if the entry at S survives
(the mark was not written before a crash), keep the suffix only when its term matches.
"""

from __future__ import annotations

from raftkv.core.types import Entry, HardState, Snapshot
from raftkv.errors import CorruptionError
from raftkv.storage.schema import Batch, SegmentHeader, SnapshotMark


class Replayer:
    def __init__(self, snapshot: Snapshot | None) -> None:
        self.snap_index = snapshot.index if snapshot else 0
        self.snap_term = snapshot.term if snapshot else 0
        self.hard_state = HardState()
        self.live: list[Entry] = []  # contiguous; every index >= snap_index
        self.max_mark = 0
        self._seen_header = False

    def header(self, header: SegmentHeader, path: str, offset: int) -> None:
        if self._seen_header:
            return
        self._seen_header = True
        self.hard_state = header.hard_state
        lost_live = header.prev_index > header.base_index and header.prev_index >= self.snap_index
        if lost_live:
            raise CorruptionError(
                f"WAL segments before {path} are missing: entries up to {header.prev_index} "
                f"are not covered by the newest snapshot (index {self.snap_index})",
                path,
                offset,
            )
        self._mark_index(header.base_index, path, offset)

    def batch(self, batch: Batch, path: str, offset: int) -> None:
        if batch.hard_state is not None:
            self.hard_state = batch.hard_state
        entries = batch.entries
        if not entries:
            return
        first = entries[0].index
        for i, entry in enumerate(entries):
            if entry.index != first + i:
                raise CorruptionError(
                    f"batch entries not contiguous at {entry.index}", path, offset
                )
        self._truncate_after(first - 1)
        keep = entries[max(0, self.snap_index - first) :]
        if not keep:
            return
        start = keep[0].index
        expected = (
            (self.live[-1].index + 1,) if self.live else (self.snap_index, self.snap_index + 1)
        )
        if start not in expected:
            raise CorruptionError(
                f"entry {start} does not follow the log (expected {expected[-1]})", path, offset
            )
        self.live.extend(keep)

    def mark(self, mark: SnapshotMark, path: str, offset: int) -> None:
        self._mark_index(mark.index, path, offset)
        if mark.index == self.snap_index and mark.term != self.snap_term:
            raise CorruptionError(
                f"WAL says snapshot {mark.index} has term {mark.term}, file says {self.snap_term}",
                path,
                offset,
            )
        self._truncate_after(mark.kept_last)
        if self.live and self.live[0].index <= mark.index:
            del self.live[: mark.index - self.live[0].index + 1]

    def finish(self) -> list[Entry]:
        """The entries after the snapshot, as the writer last had them."""
        live = self.live
        if live and live[0].index == self.snap_index:
            # Crash between the snapshot file and its WAL mark: finish applying it.
            return live[1:] if live[0].term == self.snap_term else []
        return live

    def _mark_index(self, index: int, path: str, offset: int) -> None:
        self.max_mark = max(self.max_mark, index)
        if index > self.snap_index:
            raise CorruptionError(
                f"WAL refers to a snapshot at index {index} but the newest snapshot file is at "
                f"{self.snap_index}: snapshot files are missing",
                path,
                offset,
            )

    def _truncate_after(self, index: int) -> None:
        if self.live and index < self.live[-1].index:
            del self.live[max(0, index - self.live[0].index + 1) :]
