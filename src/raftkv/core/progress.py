"""The leader's view of one follower's replication progress (etcd's tracker.Progress).

PROBE: we do not know where the follower's log matches ours; send one append at a time and
back off on rejection. REPLICATE: the follower is caught up to match; pipeline appends
optimistically, bounded by an in-flight window. Invariant: match < next. match never goes
down, except when the follower reports that its storage lost synced data (lost()).
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"  # the entries it needs were compacted: a snapshot is on its way


@dataclass(slots=True)
class Progress:
    match: int = 0
    next: int = 1
    state: ProgressState = ProgressState.PROBE
    # In PROBE, one append is outstanding until a response or the next heartbeat.
    probe_sent: bool = False
    # In REPLICATE, the last index of each append in flight, oldest first.
    inflight: deque[int] = field(default_factory=deque)
    # Heard from since the last check-quorum round.
    recent_active: bool = False
    # The highest ReadIndex/heartbeat round this follower acknowledged.
    acked_round: int = 0
    # The leader tick until which this voter helps elect no one else: the send tick of a
    # round it acknowledged plus its vote hold (in our ticks). Lease reads count on it.
    hold_until: int = 0
    # In SNAPSHOT: the index of the snapshot sent, and the leader tick it was sent at.
    pending_snapshot: int = 0
    snapshot_sent_tick: int = 0
    # The follower is recovering from lost synced data: the epoch it reported (0: not), the
    # leader tick it last said so, and recover_to: our last index when we learned of it (it
    # is done once match reaches that). recover_done: the last epoch we told it was done.
    recover_epoch: int = 0
    recover_heard: int = 0
    recover_to: int = 0
    recover_done: int = 0

    def become_probe(self) -> None:
        self.state = ProgressState.PROBE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflight.clear()

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflight.clear()

    def become_snapshot(self, index: int, tick: int) -> None:
        self.state = ProgressState.SNAPSHOT
        self.pending_snapshot = index
        self.snapshot_sent_tick = tick
        self.probe_sent = False
        self.inflight.clear()

    def is_paused(self, max_inflight: int) -> bool:
        if self.state is ProgressState.SNAPSHOT:
            return True
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        return len(self.inflight) >= max_inflight

    def sent(self, last_index: int, entries: int) -> None:
        """Record an append that ends at last_index carrying the given number of entries."""
        if self.state is ProgressState.REPLICATE:
            if entries:
                self.next = last_index + 1
                self.inflight.append(last_index)
        else:
            self.probe_sent = True

    def maybe_update(self, index: int) -> bool:
        """The follower acknowledged its log matches ours through index."""
        updated = index > self.match
        if updated:
            self.match = index
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        while self.inflight and self.inflight[0] <= index:
            self.inflight.popleft()
        return updated

    def lost(self, epoch: int, lost_from: int, last_index: int) -> None:
        """The follower lost synced data: whatever it acknowledged from lost_from on may be
        gone. The one case where match goes down; then probe from there."""
        self.recover_epoch, self.recover_to = epoch, last_index
        self.match = min(self.match, lost_from - 1)
        self.become_probe()

    def recovered(self) -> bool:
        """Is the follower's recovery complete (it holds all we had when we learned of it)?
        Then remember the epoch, to tell the follower (Heartbeat.recovered)."""
        if not self.recover_epoch or self.match < self.recover_to:
            return False
        self.recover_done, self.recover_epoch = self.recover_epoch, 0
        return True

    def maybe_decrease(self, rejected: int, hint: int) -> bool:
        """The follower rejected an append at prev index `rejected`; hint is where its log
        may match. Returns False for a stale rejection that says nothing new."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.state is ProgressState.SNAPSHOT:
            return False  # only the snapshot's own acknowledgement moves us on
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, hint + 1), self.match + 1)
        self.probe_sent = False
        return True
