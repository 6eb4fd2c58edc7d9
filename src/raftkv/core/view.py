"""RaftView: what a shell may read of the core, and nothing it could change.

The driver owns the RaftNode and is the only code that calls into it. The shells (the asyncio
server, the HTTP API, the embedded node, membership bookkeeping) see it through this
read-only protocol, so they cannot reach the log, the replication progress or the
configuration and mutate them behind the driver's back. RaftNode satisfies it; mypy checks
every shell against it and tests/core/test_view.py checks they never name the core's
internals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from raftkv.core.membership import Membership
from raftkv.core.types import Entry, NodeId, Role

if TYPE_CHECKING:
    from raftkv.core.raft import RaftStatus

__all__ = ["RaftView"]


class RaftView(Protocol):
    @property
    def id(self) -> NodeId: ...
    @property
    def role(self) -> Role: ...
    @property
    def term(self) -> int: ...
    @property
    def leader(self) -> NodeId | None: ...
    @property
    def membership(self) -> Membership:
        """The latest configuration in the log (in force as soon as appended)."""

    @property
    def voters(self) -> tuple[NodeId, ...]: ...
    @property
    def learners(self) -> tuple[NodeId, ...]: ...
    @property
    def commit_index(self) -> int: ...
    @property
    def applied_index(self) -> int:
        """What the core knows the state machine has applied."""

    @property
    def first_index(self) -> int:
        """The first index the log still holds (snapshot_index + 1)."""

    @property
    def last_index(self) -> int: ...
    @property
    def last_term(self) -> int: ...
    @property
    def snapshot_index(self) -> int: ...
    @property
    def stable_index(self) -> int:
        """Entries through it are durable on this node's disk."""

    @property
    def lost_from(self) -> int:
        """> 0 while recovering from lost synced data."""

    def term_at(self, index: int) -> int | None:
        """The term of the entry at index (None when compacted away or beyond the log)."""

    def entry(self, index: int) -> Entry:
        """The entry at index, first_index <= index <= last_index (entries are immutable)."""

    def membership_at(self, index: int) -> Membership:
        """The configuration in force once the log through index is applied."""

    def match_index(self, peer: NodeId) -> int | None:
        """How far peer's log is known to match this leader's (None: not tracked here)."""

    def status(self) -> RaftStatus:
        """A frozen copy of role, term, indexes and every peer's progress."""
