"""Log compaction for the KV server: snapshot the KvStore every N applied entries (or once the
entries applied since the last snapshot hold B bytes), make it durable, then drop the log up to
it, in the core (followers that need older entries get the snapshot) and on disk (whole WAL
segments below it are deleted).

The snapshot is taken inside the Ready loop, after advance, so it is exactly the state at the
applied index; encoding it blocks the loop for a moment (a few ms per 10k keys), writing it
does not (a worker thread).

A snapshot that cannot be written (disk full, an IO error on the new file) never stops the
node: nothing changed, the log is kept, and SnapshotRetry tries again after a backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from raftkv.core.raft import RaftNode
from raftkv.core.types import Snapshot
from raftkv.errors import DiskError
from raftkv.kv.store import KvStore
from raftkv.runtime.addresses import AddressBook
from raftkv.runtime.snapshot_data import encode_server_snapshot
from raftkv.storage import LogStorage

log = logging.getLogger("raftkv.compaction")

# After a snapshot could not be written, wait this long before the next try, doubling.
SNAPSHOT_RETRY_MIN_S = 1.0
SNAPSHOT_RETRY_MAX_S = 60.0


@dataclass(frozen=True, slots=True)
class CompactionPolicy:
    every_entries: int = 10_000  # 0: never by count
    every_bytes: int = 64 * 1024 * 1024  # 0: never by size

    @property
    def enabled(self) -> bool:
        return self.every_entries > 0 or self.every_bytes > 0


def take_snapshot(raft: RaftNode, kv: KvStore, book: AddressBook) -> Snapshot:
    """The state machine as of kv.applied_index (which the core's log must still hold)."""
    index = kv.applied_index
    term = raft.log.term(index)
    if term is None:
        raise AssertionError(f"applied index {index} is not in the log")
    members = raft.membership_at(index)
    data = encode_server_snapshot(kv.snapshot(), book.peers())
    return Snapshot(index, term, data, members.voters, members.learners)


class SnapshotRetry:
    """Writes snapshots; one that could not be written is logged (the storage counts it, see
    the raftkv_storage_snapshot_failures metric) and retried after a backoff, while the node
    keeps serving from its WAL. A DiskError that failed the storage itself is raised."""

    def __init__(self, node_id: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._id = node_id
        self._clock = clock
        self._delay = SNAPSHOT_RETRY_MIN_S
        self._not_before = 0.0

    def waiting(self) -> bool:
        """In the backoff after a failed write: do not even take a snapshot yet."""
        return self._clock() < self._not_before

    async def save(self, storage: LogStorage, snap: Snapshot) -> bool:
        """Make snap durable (storage.save_snapshot, in a worker thread); False if it could
        not be written and nothing changed."""
        try:
            await asyncio.to_thread(storage.save_snapshot, snap)
        except DiskError as e:
            if storage.failed is not None:
                raise
            log.warning(
                "%s: snapshot at index %d not written, the node keeps its log and serves on; "
                "next try in %.0fs: %s",
                self._id,
                snap.index,
                self._delay,
                e,
            )
            self._not_before = self._clock() + self._delay
            self._delay = min(2 * self._delay, SNAPSHOT_RETRY_MAX_S)
            return False
        self._delay = SNAPSHOT_RETRY_MIN_S
        return True


class Compactor:
    def __init__(self, node_id: str, policy: CompactionPolicy) -> None:
        self._id = node_id
        self._policy = policy
        self._retry = SnapshotRetry(node_id)
        self._scanned = 0  # entries up to here are counted in _bytes
        self._bytes = 0
        self.snapshots_taken = 0

    def due(self, raft: RaftNode) -> bool:
        policy, rlog = self._policy, raft.log
        applied = rlog.applied
        if not policy.enabled or applied <= rlog.snapshot_index:
            return False
        if policy.every_entries and applied - rlog.snapshot_index >= policy.every_entries:
            return True
        if policy.every_bytes:
            start = max(self._scanned, rlog.snapshot_index) + 1
            self._bytes += sum(len(rlog.entry(i).data) for i in range(start, applied + 1))
            self._scanned = applied
            return self._bytes >= policy.every_bytes
        return False

    async def maybe_compact(
        self, raft: RaftNode, kv: KvStore, book: AddressBook, storage: LogStorage
    ) -> None:
        if kv.applied_index != raft.log.applied or self._retry.waiting() or not self.due(raft):
            return
        snap = take_snapshot(raft, kv, book)
        if not await self._retry.save(storage, snap):
            return
        raft.compact(snap)
        await asyncio.to_thread(storage.compact, snap.index)
        self._bytes, self._scanned = 0, snap.index
        self.snapshots_taken += 1
        log.info(
            "%s: snapshot at index %d (%d bytes), log compacted",
            self._id,
            snap.index,
            len(snap.data),
        )

    def installed(self, index: int) -> None:
        """A snapshot from the leader replaced the log up to index."""
        self._bytes, self._scanned = 0, index
