"""Disk full: what a node has no room to persist never enters its Raft core.

The Ready loop asks a DiskRoom (storage.check_room / check_snapshot_room underneath) before it
steps inputs into the core, because once the core holds entries they must be persisted:

- a leader refuses proposals with DiskFull (HTTP 507 insufficient_storage, NOT applied);
- any node drops AppendEntries with entries, and InstallSnapshot, that it could not persist,
  without acknowledging them. To Raft that is a lost message: the leader sends them again, and
  the node catches up once space is freed. Heartbeats still pass, so it does not start
  elections, and reads that need nothing new keep working.

One DiskRoom cycle is one cycle of the loop: its inputs become one Ready, persisted as one WAL
record, so their sizes add up.
"""

from __future__ import annotations

import logging
import time

from raftkv.core.messages import AppendEntries, InstallSnapshot, Message
from raftkv.core.types import NodeId
from raftkv.errors import DiskFull
from raftkv.storage import LogStorage

log = logging.getLogger("raftkv.node")

WARN_EVERY_S = 10.0  # at most one warning this often about dropped messages


class DiskRoom:
    def __init__(self, node_id: NodeId, storage: LogStorage) -> None:
        self._id = node_id
        self._storage = storage
        self._entries = 0  # admitted in this cycle
        self._bytes = 0
        self._warned_at = -WARN_EVERY_S

    def new_cycle(self) -> None:
        self._entries = self._bytes = 0

    def check(self, entries: int, data_bytes: int) -> None:
        """Raise DiskFull unless this much more fits in the cycle's WAL record."""
        self._storage.check_room(self._entries + entries, self._bytes + data_bytes)
        self._entries += entries
        self._bytes += data_bytes

    def admit(self, msg: Message) -> bool:
        """Step msg into the core? False for entries or a snapshot that cannot be persisted."""
        try:
            match msg:
                case AppendEntries(entries=entries) if entries:
                    self.check(len(entries), sum(len(e.data) for e in entries))
                case InstallSnapshot(data=data):
                    self._storage.check_snapshot_room(len(data))
        except DiskFull as e:
            now = time.monotonic()
            if now - self._warned_at >= WARN_EVERY_S:
                self._warned_at = now
                log.warning(
                    "%s: dropping %s from %s unacknowledged until space is freed: %s",
                    self._id,
                    type(msg).__name__,
                    msg.src,
                    e,
                )
            return False
        return True
