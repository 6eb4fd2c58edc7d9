"""The embedded node's hooks around the driver (runtime.node.NodeHooks): leadership events
for the application's listeners, and a count of snapshots installed from the leader."""

from __future__ import annotations

import logging

from raftkv.core.types import Snapshot, SoftState
from raftkv.core.view import RaftView
from raftkv.embed.events import EventBus

log = logging.getLogger("raftkv.embed")


class EmbedHooks:
    def __init__(self, node_id: str, bus: EventBus) -> None:
        self._id = node_id
        self._bus = bus
        self.snapshots_installed = 0

    def on_soft_state(self, soft: SoftState, term: int) -> None:
        self._bus.on_soft_state(soft, term)

    def on_snapshot_installed(self, snapshot: Snapshot) -> None:
        self.snapshots_installed += 1

    def after_cycle(self, raft: RaftView) -> None:
        pass
