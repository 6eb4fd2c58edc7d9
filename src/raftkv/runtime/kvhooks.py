"""The KV server's state machine and its hooks around the driver.

ServerStore is the KvStore with the address book riding along in snapshots: a node that
catches up from a snapshot must also learn where the members added before it are (their
CONFIG entries were compacted away). ServerHooks keeps the address book in step with the
configuration in the log after every cycle.
"""

from __future__ import annotations

from collections.abc import Callable

from raftkv.core.types import Snapshot, SoftState
from raftkv.core.view import RaftView
from raftkv.kv.snapshot import SnapshotView
from raftkv.kv.store import KvConfig, KvStore
from raftkv.runtime.addresses import AddressBook
from raftkv.runtime.membership import MembershipTracker
from raftkv.runtime.settings import PeerAddress
from raftkv.runtime.snapshot_data import (
    copy_out,
    decode_server_snapshot,
    server_snapshot_buffer,
)


class ServerSnapshotView:
    """The store's view plus the address book as of the same moment."""

    def __init__(self, kv: SnapshotView, peers: dict[str, PeerAddress]) -> None:
        self._kv = kv
        self._peers = peers

    def encode(self) -> bytes:
        return copy_out(server_snapshot_buffer(self._kv.encode_into, self._peers))


class ServerStore(KvStore):
    def __init__(self, book: AddressBook, config: KvConfig | None = None) -> None:
        super().__init__(config)
        self._book = book

    def snapshot_view(self) -> ServerSnapshotView:  # type: ignore[override]
        return ServerSnapshotView(super().snapshot_view(), self._book.peers())

    def install_snapshot(self, snapshot: Snapshot) -> None:
        self.load_server_image(snapshot.data, snapshot.index)

    def load_server_image(self, data: bytes, index: int) -> None:
        """Become the store in a server snapshot taken at index, and learn its addresses."""
        image, peers = decode_server_snapshot(data)
        self.load(image)
        if peers:
            self._book.merge_snapshot(peers, index)


class ServerHooks:
    def __init__(self, book: AddressBook, on_removed: Callable[[int], None]) -> None:
        self.tracker = MembershipTracker(book, on_removed)

    def on_soft_state(self, soft: SoftState, term: int) -> None:
        pass

    def on_snapshot_installed(self, snapshot: Snapshot) -> None:
        pass

    def after_cycle(self, raft: RaftView) -> None:
        self.tracker.update(raft)
