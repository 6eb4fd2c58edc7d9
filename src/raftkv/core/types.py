"""The core's immutable vocabulary: log entries, hard state, roles, read states, trace events."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import msgspec

NodeId = str


class EntryKind(enum.IntEnum):
    """What a log entry carries. NOOP is the entry a new leader appends in its own term."""

    NORMAL = 0
    NOOP = 1
    CONFIG = 2


class Entry(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One log entry. Invariant: index >= 1, term >= 1; (index, term) identifies it uniquely."""

    term: int
    index: int
    kind: EntryKind = EntryKind.NORMAL
    data: bytes = b""


class HardState(msgspec.Struct, frozen=True, array_like=True):
    """What must be durable before any message that depends on it leaves the node.

    lost_from > 0: the node is recovering. Its storage lost data it had synced (and so may
    have acknowledged): entries from lost_from on may be missing or stale. Until the leader
    says it has fetched them again it votes for no one, campaigns never, and the leader counts
    no acknowledgement it gave before the loss (protocol-aware recovery). 0: nothing lost.
    """

    term: int = 0
    vote: NodeId | None = None
    commit: int = 0
    lost_from: int = 0


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class SoftState(msgspec.Struct, frozen=True):
    """Volatile state the shell may want to show: who leads, and in what role we are."""

    leader: NodeId | None
    role: Role


@dataclass(frozen=True, slots=True)
class ReadState:
    """The answer to read_index(ctx): serve the read once applied >= index.

    index is None when the read was aborted (leadership lost before it was confirmed);
    the caller should retry on the new leader.
    """

    ctx: int
    index: int | None


class TraceKind(enum.Enum):
    ELECTION_STARTED = "election_started"
    PRE_VOTE_STARTED = "pre_vote_started"
    BECAME_LEADER = "became_leader"
    BECAME_FOLLOWER = "became_follower"
    STEPPED_DOWN = "stepped_down"
    VOTE_GRANTED = "vote_granted"
    VOTE_REJECTED = "vote_rejected"
    APPENDED = "appended"
    TRUNCATED = "truncated"
    COMMITTED = "committed"
    QUORUM_LOST = "quorum_lost"
    READ_CONFIRMED = "read_confirmed"
    TRANSFER_STARTED = "transfer_started"
    SNAPSHOT_INSTALLED = "snapshot_installed"
    MEMBERSHIP_CHANGED = "membership_changed"
    RECOVERING = "recovering"  # we lost synced entries (from index): no votes until caught up
    RECOVERED = "recovered"  # the leader says we fetched them again: we vote again
    PEER_RECOVERING = "peer_recovering"  # (leader) a follower reported it lost entries


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """Something a human watching the cluster would want narrated (the demo uses these)."""

    kind: TraceKind
    term: int
    index: int = 0
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Point-in-time state machine image covering the log up to (index, term)."""

    index: int
    term: int
    data: bytes
    voters: tuple[NodeId, ...] = ()
    learners: tuple[NodeId, ...] = ()
