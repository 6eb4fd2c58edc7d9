"""When to snapshot the state machine and compact the log: a pure decision.

A snapshot rewrites the whole state, so taking one every N entries costs N entries' worth of
log and a whole store's worth of writing: with a 200 MB store and 10k 1 KB entries between
snapshots, 20x write amplification. So a snapshot is due only once the log since the last one
is long enough (snapshot_entries entries, or snapshot_bytes of entry data) and, for a store
beyond SMALL_STATE, holds at least log_ratio times what the last snapshot has beyond it: each
snapshot then costs about as much writing as the log it replaces, while a small store is still
snapshotted every N entries (cheap, and it keeps the log short).
Each node stretches its thresholds by its own random factor in [1, 1 + JITTER), redrawn after
every snapshot, so the nodes of a cluster do not all snapshot at the same index.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from raftkv.errors import BadRequest

JITTER = 0.25
SMALL_STATE = 4 * 1024 * 1024  # below this, snapshots go by entries and bytes alone


@dataclass(frozen=True, slots=True)
class SnapshotPolicy:
    entries: int = 10_000  # 0: never snapshot (compaction off)
    bytes: int = 64 * 1024 * 1024  # 0: no size trigger
    log_ratio: float = 1.0  # the log must hold this many times the last snapshot's size

    def validate(self) -> None:
        if self.entries < 0 or self.bytes < 0:
            raise BadRequest("snapshot entries and bytes must be >= 0")
        if self.log_ratio < 0:
            raise BadRequest("snapshot log ratio must be >= 0")

    @property
    def enabled(self) -> bool:
        return self.entries > 0


class SnapshotSchedule:
    """Counts the log since the last snapshot and says when the next one is due."""

    def __init__(self, policy: SnapshotPolicy, rng: random.Random) -> None:
        policy.validate()
        self.policy = policy
        self._rng = rng
        self._stretch = 1.0
        self.entries = 0  # entries applied since the last snapshot
        self.log_bytes = 0  # their data, in bytes
        self.snapshot_bytes = 0  # size of the last snapshot (0: none yet)
        self._redraw()

    def _redraw(self) -> None:
        self._stretch = 1.0 + self._rng.random() * JITTER

    def applied(self, count: int, data_bytes: int) -> None:
        self.entries += count
        self.log_bytes += data_bytes

    def due(self) -> bool:
        p = self.policy
        if not p.enabled:
            return False
        long_enough = self.entries >= p.entries * self._stretch or (
            p.bytes > 0 and self.log_bytes >= p.bytes * self._stretch
        )
        return long_enough and self.log_bytes >= p.log_ratio * (self.snapshot_bytes - SMALL_STATE)

    def mark(self) -> tuple[int, int]:
        """The counts a snapshot starting now will cover (hand them to taken())."""
        return self.entries, self.log_bytes

    def taken(self, size: int, covered: tuple[int, int]) -> None:
        """A snapshot of the given size now covers the entries counted up to mark()."""
        self.entries -= covered[0]
        self.log_bytes -= covered[1]
        self.snapshot_bytes = size
        self._redraw()
