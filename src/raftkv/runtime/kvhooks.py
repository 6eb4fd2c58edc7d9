"""The KV server's extensions of the Ready loop (runtime.node.RuntimeHooks): install snapshots
sent by the leader, compact the log, and keep the address book in step with the configuration."""

from __future__ import annotations

import logging
from collections.abc import Callable

from raftkv.core.raft import RaftNode
from raftkv.core.types import Snapshot, SoftState
from raftkv.kv.store import KvStore
from raftkv.runtime.addresses import AddressBook
from raftkv.runtime.compaction import CompactionPolicy, Compactor
from raftkv.runtime.membership import MembershipTracker
from raftkv.runtime.snapshot_data import decode_server_snapshot
from raftkv.storage import LogStorage

log = logging.getLogger("raftkv.node")


class KvServerHooks:
    def __init__(
        self,
        node_id: str,
        kv: KvStore,
        book: AddressBook,
        policy: CompactionPolicy,
        on_removed: Callable[[int], None],
    ) -> None:
        self._id = node_id
        self._kv = kv
        self._book = book
        self.compactor = Compactor(node_id, policy)
        self.tracker = MembershipTracker(book, on_removed)
        self.snapshots_installed = 0
        self._notify: Callable[[], None] | None = None

    def set_notify(self, notify: Callable[[], None]) -> None:
        """Called after a snapshot replaced the store (wakes watchers)."""
        self._notify = notify

    def on_soft_state(self, soft: SoftState, term: int) -> None:
        pass

    def install_snapshot(self, snapshot: Snapshot) -> None:
        kv_image, peers = decode_server_snapshot(snapshot.data)
        self._kv.load(kv_image)
        if peers:
            self._book.merge_snapshot(peers, snapshot.index)
        self.compactor.installed(snapshot.index)
        self.snapshots_installed += 1
        log.info(
            "%s: installed the leader's snapshot at index %d (%d bytes)",
            self._id,
            snapshot.index,
            len(snapshot.data),
        )
        if self._notify is not None:
            self._notify()

    async def after_advance(self, raft: RaftNode, storage: LogStorage) -> None:
        self.tracker.update(raft)
        await self.compactor.maybe_compact(raft, self._kv, self._book, storage)
