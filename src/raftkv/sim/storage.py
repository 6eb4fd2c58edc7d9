"""A simulated node's log storage: the real LogStorage, on the node's SimFs, as the driver's
LogStore, with what it has promised to be durable mirrored in a SimDisk.

The SimDisk is the safety checker's view of the disk: an append counts there once a sync
returned (or a snapshot was installed or marked, which sync too). Promises (votes, acks) are
checked against it when they leave. After a crash the real recovery runs on what the SimFs
kept, and it must find everything the SimDisk holds: a WAL that acknowledged a sync it did
not make durable, or recovery that drops a synced record, shows up there. Only where synced
data was damaged (corrupt_synced_record) may recovery come back without some of it, and then
it must say so.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path

from raftkv.core.types import Entry, HardState, Snapshot
from raftkv.sim.disk import SimDisk
from raftkv.sim.fs import SimFs
from raftkv.storage import LogStorage, Recovered
from raftkv.storage.record import Record, RecordType
from raftkv.storage.schema import BATCH_DECODER, MARK_DECODER
from raftkv.storage.segment import list_segments, scan_segment

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


Unsynced = list[tuple[HardState | None, tuple[Entry, ...]]]


def lost_by_recovery(disk: SimDisk, rec: Recovered, unsynced: Unsynced) -> str | None:
    """What recovery failed to bring back of the durable state the disk holds, or None.

    unsynced: the writes issued but not synced when the node stopped. Any of them may have
    reached the disk anyway (and recovery makes durable what it finds), so a synced entry
    may come back replaced, or cut off, by one of them: then the log holds that write's first
    entry. When recovery says that it lost synced data (rec.hard_state.lost_from), entries
    from there on may be gone (the node gets them again from its peers)."""
    base = rec.snapshot.index if rec.snapshot is not None else 0
    if base < disk.base:
        return f"snapshot {disk.base} came back as {base}"
    have = {e.index: e.term for e in rec.entries}
    survived = [es[0].index for _, es in unsynced if es and have.get(es[0].index) == es[0].term]
    lost_from = rec.hard_state.lost_from
    for entry in disk.entries:
        if lost_from and entry.index >= lost_from:
            continue
        if any(first <= entry.index for first in survived):
            continue  # a later write replaced the log from there
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


def corrupt_synced_record(
    fs: SimFs, rng: random.Random, *, holding: int | None = None
) -> str | None:
    """Damage one byte of a WAL record that was synced and that a later durable record
    attests: the damage recovery promises to tell from a torn write (storage/recovery.py; a
    record no durable record attests is its documented limit, so never chosen). holding: only
    a record that holds this entry. Call on a file system just after a crash (nothing
    unsynced). Returns what was damaged, or None when no record qualifies."""
    found = list_segments(fs, STORAGE_DIR)
    candidates: list[tuple[Path, Record]] = []
    for k, (_, path) in enumerate(found):
        buf = fs.read_bytes(path)
        scanned = scan_segment(path, buf)
        attested = len(buf) if k < len(found) - 1 else _attested(scanned.records)
        candidates += [
            (path, rec)
            for rec in scanned.records[1:]  # not the header: its damage is refused
            if rec.end <= attested and (holding is None or _holds(rec, holding))
        ]
    if not candidates:
        return None
    path, rec = rng.choice(candidates)
    offset = rng.randrange(rec.offset, rec.end)
    fs.corrupt(path, offset, rng)
    return f"{path.name} offset {offset} (a {rec.rtype.name} record at {rec.offset})"


def _holds(rec: Record, index: int) -> bool:
    if rec.rtype is not RecordType.BATCH:
        return False
    return any(e.index == index for e in BATCH_DECODER.decode(rec.payload).entries)


def _attested(records: list[Record]) -> int:
    """How far the segment is attested synced by its records (see storage/recovery.py)."""
    best = records[0].end
    for rec in records[1:]:
        if rec.rtype is RecordType.BATCH:
            best = max(best, BATCH_DECODER.decode(rec.payload).synced)
        elif rec.rtype is RecordType.SNAPSHOT_MARK:
            best = max(best, MARK_DECODER.decode(rec.payload).synced)
    return best
