"""Keeps the address book (addresses.py) in step with the configuration in the Raft log.

Run once per Ready (after advance). When the core's configuration changed (a CONFIG entry was
appended or truncated, or a snapshot installed), scan the log for CONFIG entries: an added node's
addresses are learned from its entry at once. Once the newest configuration is applied, nodes
outside it are forgotten. If that newest entry removes this node, it was removed from the
cluster. (A snapshot's configuration without this node says nothing of the kind: a node that
joins gets a snapshot taken before it was added, then the entry that adds it.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from raftkv.core.membership import ConfChangeKind, Membership, decode_conf_entry
from raftkv.core.types import EntryKind
from raftkv.core.view import RaftView
from raftkv.runtime.addresses import AddressBook, decode_context

log = logging.getLogger("raftkv.membership")


class MembershipTracker:
    def __init__(self, book: AddressBook, on_removed: Callable[[int], None]) -> None:
        self._book = book
        self._on_removed = on_removed  # called with the index of the configuration
        self._seen: Membership | None = None
        self._conf_index = 0  # the newest CONFIG entry in the log, or the snapshot's index
        self._removes_me = False  # that newest entry removes this node
        self._settled = 0  # the configuration index whose members the book was pruned to
        self.removed = False

    def update(self, raft: RaftView) -> None:
        membership = raft.membership
        if membership is not self._seen:
            self._seen = membership
            self._conf_index = self._scan(raft)
        conf = self._conf_index
        if conf > self._settled and raft.applied_index >= conf:
            self._settled = conf
            gone = self._book.keep_only(membership.members, conf)
            if gone:
                log.info("%s: %s left the configuration at index %d", raft.id, gone, conf)
            if self._removes_me and raft.id not in membership.members and not self.removed:
                self.removed = True
                self._on_removed(conf)

    def _scan(self, raft: RaftView) -> int:
        """Learn the addresses in the log's CONFIG entries; the newest one's index (or the
        snapshot's index when the log holds none)."""
        newest = 0
        self._removes_me = False
        for i in range(raft.last_index, raft.snapshot_index, -1):
            entry = raft.entry(i)
            if entry.kind is not EntryKind.CONFIG:
                continue
            change = decode_conf_entry(entry.data).change
            if not newest:
                newest = i
                self._removes_me = change.kind is ConfChangeKind.REMOVE and change.node == raft.id
            if change.kind is ConfChangeKind.ADD_LEARNER:
                addr = decode_context(change.context)
                if addr is not None:
                    self._book.learn(change.node, addr, i)
        return newest or raft.snapshot_index
