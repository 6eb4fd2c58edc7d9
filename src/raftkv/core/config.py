"""Tunables of the Raft core. Times are in ticks: the shell decides how long a tick is."""

from __future__ import annotations

from dataclasses import dataclass

from raftkv.errors import BadRequest


@dataclass(frozen=True, slots=True)
class Config:
    # A follower that hears nothing for a random time in [election_ticks, 2*election_ticks)
    # starts an election. A leader sends a heartbeat every heartbeat_ticks.
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    # The election timeout is drawn from [election_ticks, election_ticks + jitter); 0 means
    # jitter = election_ticks. Small jitter makes split votes (and their bugs) common.
    election_jitter_ticks: int = 0
    # Replication flow control: at most max_inflight AppendEntries outstanding per follower,
    # each with at most max_batch_entries entries and (unless a single entry is larger)
    # max_batch_bytes of entry data.
    max_inflight: int = 64
    max_batch_entries: int = 512
    max_batch_bytes: int = 1 << 20
    # At most this many committed entries are handed out for apply per Ready.
    max_apply_entries: int = 4096
    pre_vote: bool = True
    check_quorum: bool = True
    # Lease reads are valid for election_ticks - lease_drift_ticks after the heartbeat that
    # a quorum acknowledged was sent; the margin absorbs clock-rate drift between nodes.
    lease_drift_ticks: int = 2

    def validate(self) -> None:
        if self.heartbeat_ticks < 1:
            raise BadRequest("heartbeat_ticks must be >= 1")
        if self.election_ticks <= self.heartbeat_ticks:
            raise BadRequest("election_ticks must be greater than heartbeat_ticks")
        if self.max_inflight < 1 or self.max_batch_entries < 1 or self.max_batch_bytes < 1:
            raise BadRequest("max_inflight, max_batch_entries and max_batch_bytes must be >= 1")
        if self.election_jitter_ticks < 0:
            raise BadRequest("election_jitter_ticks must be >= 0")
        if not 0 <= self.lease_drift_ticks < self.election_ticks:
            raise BadRequest("lease_drift_ticks must be in [0, election_ticks)")
