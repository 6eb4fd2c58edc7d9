"""Raft messages: one frozen, tagged msgspec Struct per message type.

Every message carries the sender's term, its source and destination. The tag lets the wire
codec (raftkv.wire) decode a Message union without a hand-written type switch.
"""

from __future__ import annotations

import msgspec

from raftkv.core.types import Entry, NodeId


class _Base(msgspec.Struct, frozen=True, array_like=True, tag=True):
    term: int
    src: NodeId
    dst: NodeId


class RequestVote(_Base, frozen=True, tag="rv"):
    """Candidate asks for a vote. pre_vote: a dry run that changes no state (dissertation 9.6).

    transfer: the election was started by TimeoutNow, so voters must not ignore it for
    leader stickiness (they would otherwise, while they still hear from a leader).
    """

    last_log_index: int
    last_log_term: int
    pre_vote: bool = False
    transfer: bool = False


class RequestVoteResponse(_Base, frozen=True, tag="rvr"):
    granted: bool
    pre_vote: bool = False
    newer_log: bool = False  # refused because the voter's log is more up to date


class AppendEntries(_Base, frozen=True, tag="ae"):
    """Replicate entries after (prev_log_index, prev_log_term); commit tells how far to apply."""

    prev_log_index: int
    prev_log_term: int
    entries: tuple[Entry, ...]
    commit: int


class AppendEntriesResponse(_Base, frozen=True, tag="aer"):
    """success: follower's log matches through index.

    On reject, index is the rejected prev_log_index and (hint_index, hint_term) is the
    follower's best guess at where the logs may agree: the largest index <= hint_index
    whose term is <= hint_term (fast backtracking, etcd-style).

    lost_from, recover_epoch: set (non-zero) while the follower is recovering from lost
    synced data: entries from lost_from on may be gone, whatever it acknowledged before. The
    epoch names this recovery (a fresh one at each start), so the leader resets what it knows
    of the follower once per recovery, can tell the follower's answers from this recovery
    from older ones still in flight, and tells it when it is done (Heartbeat.recovered).
    """

    success: bool
    index: int
    hint_index: int = 0
    hint_term: int = 0
    lost_from: int = 0
    recover_epoch: int = 0


class Heartbeat(_Base, frozen=True, tag="hb"):
    """Leader liveness plus commit (never beyond what the follower is known to have).

    read_seq names the ReadIndex round this heartbeat confirms; 0 when none. recovered: the
    epoch of the follower's latest recovery that is complete (it holds the leader's log
    through all the leader had when it learned of the loss); 0 when none.
    """

    commit: int
    read_seq: int = 0
    recovered: int = 0


class HeartbeatResponse(_Base, frozen=True, tag="hbr"):
    """hold_us: for at least this long after this heartbeat the follower helps elect no one
    but the leader (leadership transfers aside); the leader's lease counts on it. 0: no promise
    (no lease from this follower)."""

    read_seq: int = 0
    hold_us: int = 0
    lost_from: int = 0  # as in AppendEntriesResponse: set while recovering
    recover_epoch: int = 0


class TimeoutNow(_Base, frozen=True, tag="tn"):
    """Leadership transfer: the target starts an election at once, skipping pre-vote."""


class InstallSnapshot(_Base, frozen=True, tag="is"):
    """Send a state machine snapshot to a follower whose needed entries were compacted."""

    index: int
    snapshot_term: int
    voters: tuple[NodeId, ...]
    data: bytes
    learners: tuple[NodeId, ...] = ()


Message = (
    RequestVote
    | RequestVoteResponse
    | AppendEntries
    | AppendEntriesResponse
    | Heartbeat
    | HeartbeatResponse
    | TimeoutNow
    | InstallSnapshot
)

MESSAGE_TYPES: tuple[type[Message], ...] = (
    RequestVote,
    RequestVoteResponse,
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    TimeoutNow,
    InstallSnapshot,
)
