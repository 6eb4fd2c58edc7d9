"""A simulated node's log storage: the real LogStorage, on the node's SimFs, as the driver's
LogStore, with what it has promised to be durable mirrored in a SimDisk.

The SimDisk is the safety checker's view of the disk: an append counts there once a sync
returned (or a snapshot was installed or marked, which sync too). Promises (votes, acks) are
checked against it when they leave. After a crash the real recovery runs on what the SimFs
kept, and it must find everything the SimDisk holds: a WAL that acknowledged a sync it did
not make durable, or recovery that drops a synced record, shows up there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from raftkv.core.types import Entry, HardState, Snapshot
from raftkv.sim.disk import SimDisk
from raftkv.storage import LogStorage, Recovered

STORAGE_DIR = Path("/raft")
# Small segments so that rolling to a new segment, and deleting old ones, happen in every run.
SEGMENT_BYTES = 16 * 1024

StorageOpener = Callable[..., tuple[LogStorage, Recovered]]


class SimLogStore:
    def __init__(self, storage: LogStorage, disk: SimDisk) -> None:
        self.storage = storage
        self.disk = disk
        self.pending: list[tuple[HardState | None, tuple[Entry, ...]]] = []

    @property
    def failed(self) -> BaseException | None:
        return self.storage.failed

    def check_room(self, entries: int, data_bytes: int) -> None:
        self.storage.check_room(entries, data_bytes)

    def check_snapshot_room(self, nbytes: int) -> None:
        self.storage.check_snapshot_room(nbytes)

    def append(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        self.storage.append(hard_state, entries)
        self.pending.append((hard_state, tuple(entries)))

    def sync(self) -> None:
        self.storage.sync()
        self._synced()

    def install_snapshot(self, snapshot: Snapshot) -> None:
        self.storage.install_snapshot(snapshot)
        self._synced()  # the snapshot's mark goes in the log after every earlier append
        self.disk.persist(None, (), snapshot)

    def write_snapshot_file(self, snapshot: Snapshot) -> None:
        """The file is durable now, and recovery starts from the newest snapshot file (it
        writes the mark if a crash came first), so a newer one is the disk's base now."""
        self.storage.write_snapshot_file(snapshot)
        if snapshot.index > self.disk.base:
            self.disk.install(snapshot)

    def mark_snapshot(self, snapshot: Snapshot) -> None:
        self.storage.mark_snapshot(snapshot)
        self._synced()

    def compact(self, index: int) -> None:
        self.storage.compact(index)

    def _synced(self) -> None:
        pending, self.pending = self.pending, []
        for hard, entries in pending:
            self.disk.persist(hard, entries)


def lost_by_recovery(disk: SimDisk, rec: Recovered) -> str | None:
    """What recovery failed to bring back of the durable state the disk holds, or None."""
    base = rec.snapshot.index if rec.snapshot is not None else 0
    if base < disk.base:
        return f"snapshot {disk.base} came back as {base}"
    have = {e.index: e.term for e in rec.entries}
    for entry in disk.entries:
        if entry.index > base and have.get(entry.index) != entry.term:
            return f"entry {entry.index} (term {entry.term}) came back as {have.get(entry.index)}"
    old, new = disk.hard_state, rec.hard_state
    if new.term < old.term or (new.term == old.term and old.vote and new.vote != old.vote):
        return f"term/vote ({old.term}, {old.vote}) came back as ({new.term}, {new.vote})"
    return None


def recovered_disk(rec: Recovered) -> SimDisk:
    """The disk as recovery found it: everything on it now counts as durable."""
    disk = SimDisk()
    if rec.snapshot is not None:
        disk.install(rec.snapshot)
    disk.persist(rec.hard_state, rec.entries)
    return disk
