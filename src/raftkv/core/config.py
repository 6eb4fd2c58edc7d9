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
    # Lease reads (see RaftNode._in_lease and _on_round_acked). A voter that acknowledges a
    # heartbeat helps elect no one else for election_ticks of its own ticks (and as long after
    # it starts), and tells the leader how long that is in real time: vote_hold_us. The leader
    # serves lease reads until the hold of a quorum ends, less lease_drift_ticks of its own
    # ticks: the margin for clock-rate drift. With uniform settings the lease is
    # election_ticks - 1 - lease_drift_ticks ticks after the heartbeat was sent.
    lease_drift_ticks: int = 1
    # The shell's tick period in microseconds. The core reads no clock; it needs this only to
    # compare its vote hold with its peers' when their tick or election settings differ.
    tick_us: int = 50_000

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
        if self.tick_us < 1:
            raise BadRequest("tick_us must be >= 1")

    @property
    def vote_hold_us(self) -> int:
        """How long at the least we refuse to help elect anyone after acknowledging our
        leader's heartbeat: election_ticks of our ticks, the first of which may come at once."""
        return (self.election_ticks - 1) * self.tick_us
