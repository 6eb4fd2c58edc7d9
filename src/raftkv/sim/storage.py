"""A simulated node's log storage: the driver's LogStore and SnapshotStore over a SimDisk.

Appends are written but not durable: they wait in `pending` until a sync, as in a page cache.
A crash keeps a random prefix of the pending appends (a disk that flushed some of them on its
own) and loses the rest. The SimDisk holds exactly what survives a crash, which is what the
safety checker compares promises against.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from raftkv.core.types import Entry, HardState, Snapshot
from raftkv.sim.disk import SimDisk


class SimLogStore:
    def __init__(self, disk: SimDisk) -> None:
        self.disk = disk
        self.pending: list[tuple[HardState | None, tuple[Entry, ...]]] = []

    @property
    def failed(self) -> BaseException | None:
        return None

    def check_room(self, entries: int, data_bytes: int) -> None:
        """A simulated disk never fills up."""

    def check_snapshot_room(self, nbytes: int) -> None:
        """A simulated disk never fills up."""

    def append(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        self.pending.append((hard_state, tuple(entries)))

    def sync(self) -> None:
        pending, self.pending = self.pending, []
        for hard, entries in pending:
            self.disk.persist(hard, entries)

    def install_snapshot(self, snapshot: Snapshot) -> None:
        self.sync()  # the snapshot's mark goes in the log after every earlier write
        self.disk.persist(None, (), snapshot)

    def mark_snapshot(self, snapshot: Snapshot) -> None:
        self.sync()

    def compact(self, index: int) -> None:
        """Nothing to delete: the disk model drops what a snapshot covers when it lands."""

    def write_snapshot_file(self, snapshot: Snapshot) -> None:
        """The file is durable at once, and recovery starts from the
        newest snapshot file (LogStorage writes its mark at startup if a crash came before
        the mark), so a newer one becomes the disk's base now; an older one changes nothing."""
        if snapshot.index > self.disk.base:
            self.disk.install(snapshot)

    def crash(self, rng: random.Random) -> int:
        """Power loss: a random prefix of the unsynced appends survives. Returns how many."""
        kept = rng.randrange(len(self.pending) + 1) if self.pending else 0
        self.pending = self.pending[:kept]
        self.sync()
        return kept
