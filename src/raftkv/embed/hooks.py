"""The embedded node's extensions of the Ready loop (runtime.node.RuntimeHooks):
leadership events, snapshot installs from the leader, and periodic log compaction."""

from __future__ import annotations

import asyncio
import logging

from raftkv.core.raft import RaftNode
from raftkv.core.types import Snapshot, SoftState
from raftkv.embed.events import EventBus
from raftkv.embed.replica import Replica
from raftkv.runtime.compaction import SnapshotRetry
from raftkv.storage import LogStorage

log = logging.getLogger("raftkv.embed")


class EmbedHooks:
    def __init__(self, node_id: str, replica: Replica, bus: EventBus, snapshot_every: int) -> None:
        self._id = node_id
        self._replica = replica
        self._bus = bus
        self._every = snapshot_every
        self._retry_at = 0
        self._writes = SnapshotRetry(node_id)
        self.snapshots_taken = 0
        self.snapshots_installed = 0

    def on_soft_state(self, soft: SoftState, term: int) -> None:
        self._bus.on_soft_state(soft, term)

    def install_snapshot(self, snapshot: Snapshot) -> None:
        self._replica.restore(snapshot.data, snapshot.index)
        self.snapshots_installed += 1
        log.info("%s: installed the leader's snapshot at index %d", self._id, snapshot.index)

    async def after_advance(self, raft: RaftNode, storage: LogStorage) -> None:
        """Every snapshot_every applied entries: snapshot the state machine (here, in the loop:
        it must see the state at exactly that index), make it durable, then drop the log up to
        it in the core and on disk."""
        applied = raft.log.applied
        if not self._every or applied < max(self._retry_at, raft.log.snapshot_index + self._every):
            return
        if self._writes.waiting():
            return
        term = raft.log.term(applied)
        if term is None or self._replica.applied_index != applied:
            return
        try:
            data = self._replica.snapshot()
        except Exception:
            # The state machine's snapshot() failed: keep the log (nothing is lost) and try
            # again after another snapshot_every entries, rather than stopping the node.
            log.exception("%s: snapshot at index %d failed; log not compacted", self._id, applied)
            self._retry_at = applied + self._every
            return
        members = raft.membership_at(applied)
        snap = Snapshot(applied, term, data, members.voters, members.learners)
        if not await self._writes.save(storage, snap):
            return
        raft.compact(snap)
        await asyncio.to_thread(storage.compact, applied)
        self.snapshots_taken += 1
        log.debug("%s: snapshot at index %d, log compacted", self._id, applied)
