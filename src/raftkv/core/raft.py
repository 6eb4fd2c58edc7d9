"""The Raft state machine of one node: pure, single-threaded, driven by tick/step/propose.

Nothing here does IO or reads a clock. Effects leave as a Ready (see ready.py), which the
driver carries out; storage writes are asynchronous: the driver hands each write's
acknowledgement back through persisted() once it is durable, and only then does the core
count those entries as stored here (for commit, and for apply).

Beyond the paper: pre-vote and check-quorum (dissertation 9.6), leader stickiness, fast
log backtracking, pipelined replication with flow control, ReadIndex reads batched per
heartbeat round, lease reads, leadership transfer (dissertation 3.10), and protocol-aware
recovery from lost synced data (Alagappan et al., FAST 2018): a node whose storage lost
entries it may have acknowledged (HardState.lost_from) votes for no one and never campaigns
until the leader says it has them again, and the leader stops counting what it acknowledged
before the loss (Progress.lost).

Choices that save messages (each one is a process wake-up): pipelined appends only to the
followers a commit waits for, one at a time to the rest; no message carries only a new commit
index (followers learn it from the next append or heartbeat, or at once when they serve a
read: read_index(for_peer=...)); at most one read round in flight, sent to just enough
followers for a quorum (the periodic heartbeat goes to all).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from raftkv.core import quorum
from raftkv.core.config import Config
from raftkv.core.log import RaftLog
from raftkv.core.membership import (
    ConfChange,
    Membership,
    decode_conf_entry,
    encode_conf_entry,
)
from raftkv.core.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from raftkv.core.progress import Progress, ProgressState
from raftkv.core.ready import Persist, Ready, Stable
from raftkv.core.types import (
    Entry,
    EntryKind,
    HardState,
    NodeId,
    ReadState,
    Role,
    Snapshot,
    SoftState,
    TraceEvent,
    TraceKind,
)
from raftkv.errors import BadRequest, NotLeader, ProposalDropped


@dataclass(frozen=True, slots=True)
class PeerStatus:
    match: int
    next: int
    state: str
    recent_active: bool
    recovering: bool = False  # it reported lost synced data and has not caught up yet


@dataclass(frozen=True, slots=True)
class RaftStatus:
    id: NodeId
    role: Role
    term: int
    leader: NodeId | None
    vote: NodeId | None
    commit_index: int
    applied_index: int
    last_index: int
    peers: dict[NodeId, PeerStatus]
    lost_from: int = 0  # > 0: recovering from lost synced data (see HardState)


@dataclass(slots=True)
class _PendingRead:
    ctx: int
    index: int
    round: int  # the heartbeat round that must be acknowledged by a quorum; 0 = not sent yet


class RaftNode:
    def __init__(
        self,
        node_id: NodeId,
        voters: Iterable[NodeId],
        config: Config,
        rng: random.Random,
        *,
        hard_state: HardState | None = None,
        entries: Iterable[Entry] = (),
        snapshot: Snapshot | None = None,
        snapshot_index: int = 0,
        snapshot_term: int = 0,
        applied: int = 0,
        learners: Iterable[NodeId] = (),
    ) -> None:
        config.validate()
        self.id = node_id
        # The configuration the log starts from (initial, or the snapshot's); CONFIG entries in
        # the log change it from there.
        initial = Membership.of(tuple(voters), tuple(learners))
        if node_id not in initial.members:
            raise BadRequest(f"node {node_id!r} is not a member of {initial.members}")
        if snapshot is not None and snapshot.voters:
            # The snapshot knows better; it may even exclude us (we were removed): then we
            # only listen, and never campaign.
            initial = Membership.of(snapshot.voters, snapshot.learners)
        self._base_membership = initial
        self.membership = initial
        self._conf_index = 0  # index of the latest CONFIG entry in the log (0: none)
        self.config = config
        self._rng = rng
        hs = hard_state or HardState()
        # The latest state machine snapshot: the log starts after it, and followers that need
        # compacted entries are sent it.
        self._snapshot = snapshot
        if snapshot is not None:
            snapshot_index, snapshot_term = snapshot.index, snapshot.term
            applied = max(applied, snapshot.index)
        self.term = hs.term
        self.vote = hs.vote
        # Recovering from lost synced data (see HardState.lost_from); the epoch names this
        # recovery in our responses, fresh at each start (drawn below).
        self._lost_from = hs.lost_from
        self._recover_epoch = 0
        self.log = RaftLog(
            tuple(entries),
            snapshot_index=snapshot_index,
            snapshot_term=snapshot_term,
            committed=hs.commit,
            applied=applied,
        )
        self.role = Role.FOLLOWER
        self.leader: NodeId | None = None
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = 0
        self._ticks = 0
        # Until this tick we help elect no one (see _in_lease); it covers the start too.
        self._hold_until = self._hold_after_start(hs)
        self._votes: dict[NodeId, bool] = {}
        self._outdated = False  # a voter of the current election said its log is newer
        self.progress: dict[NodeId, Progress] = {}
        self._transferee: NodeId | None = None
        self._transfer_elapsed = 0
        # ReadIndex: every heartbeat broadcast is a numbered round; a read waits for a
        # quorum to acknowledge a round sent after the read was registered.
        self._round = 0
        self._round_sent_tick: dict[int, int] = {}
        self._reads: list[_PendingRead] = []
        self._reads_before_commit: list[int] = []
        self._read_for: dict[int, NodeId] = {}  # read ctx -> the follower serving it
        self._reads_unsent = False
        # The newest round that carries reads and is not confirmed yet (0: none). While one
        # is in flight, new reads wait for the next round, sent once it is confirmed (or at
        # the next heartbeat tick): one round serves every read that arrived meanwhile.
        self._read_round = 0
        self._lease_until = 0
        self._lease_disabled = False
        # Outputs accumulated for the next Ready.
        self._msgs: list[Message] = []
        self._msgs_after_persist: list[Message] = []
        self._read_states: list[ReadState] = []
        self._events: list[TraceEvent] = []
        self._prev_hard = HardState(self.term, self.vote, self.log.committed)
        self._prev_soft = SoftState(None, Role.FOLLOWER)
        # The leader's snapshot: to hand to storage (_install), then being written
        # (_installing: appends are dropped meanwhile, the log is unchanged until it is
        # durable), then durable and to hand to the state machine (_restore).
        self._install: Snapshot | None = None
        self._installing: Snapshot | None = None
        self._restore: Snapshot | None = None
        self._refresh_membership()
        self._reset_election_timer()
        if self._lost_from:
            self._recover_epoch = rng.randrange(1, 1 << 31)
            self._event(TraceKind.RECOVERING, index=self._lost_from)

    # === public API =========================================================================

    @property
    def voters(self) -> tuple[NodeId, ...]:
        return self.membership.voters

    @property
    def learners(self) -> tuple[NodeId, ...]:
        return self.membership.learners

    # Read-only queries (raftkv.core.view.RaftView: all a shell may see of the core).

    @property
    def commit_index(self) -> int:
        return self.log.committed

    @property
    def applied_index(self) -> int:
        return self.log.applied

    @property
    def first_index(self) -> int:
        return self.log.first_index()

    @property
    def last_index(self) -> int:
        return self.log.last_index()

    @property
    def last_term(self) -> int:
        return self.log.last_term()

    @property
    def snapshot_index(self) -> int:
        return self.log.snapshot_index

    @property
    def stable_index(self) -> int:
        return self.log.stable

    def term_at(self, index: int) -> int | None:
        return self.log.term(index)

    def entry(self, index: int) -> Entry:
        return self.log.entry(index)

    def match_index(self, peer: NodeId) -> int | None:
        if peer == self.id:
            return self.log.stable
        pr = self.progress.get(peer)
        return None if pr is None else pr.match

    def membership_at(self, index: int) -> Membership:
        """The configuration in force once the log up to index is applied (for snapshots).
        A scan back from index: kept tight (no call per entry), since a snapshot's loop
        cycle runs it over every entry since the last snapshot (tens of thousands)."""
        log, config = self.log, EntryKind.CONFIG
        upto = min(index, log.last_index()) - log.snapshot_index
        for entry in reversed(log.entries[: max(upto, 0)]):
            if entry.kind is config:
                return decode_conf_entry(entry.data).membership
        return self._base_membership

    def propose_conf_change(self, change: ConfChange) -> tuple[int, int]:
        """Propose one single-server membership change. Only one may be pending at a time, and
        only once this leader has committed an entry of its own term (dissertation 4.1)."""
        if self.role is not Role.LEADER:
            raise NotLeader(f"{self.id} is not the leader", self.leader)
        if self._conf_index > self.log.committed:
            raise ProposalDropped("another membership change is still being committed; retry")
        if not self._committed_in_term():
            raise ProposalDropped("the new leader has not committed an entry yet; retry")
        if self._transferee is not None:
            raise ProposalDropped(f"leadership transfer to {self._transferee} in progress")
        result = self.membership.apply(change)
        entry = Entry(
            self.term,
            self.log.last_index() + 1,
            EntryKind.CONFIG,
            encode_conf_entry(change, result),
        )
        self._append_as_leader([entry])
        return entry.term, entry.index

    def tick(self) -> None:
        """Advance logical time by one tick."""
        self._ticks += 1
        if self.role is Role.LEADER:
            self._tick_leader()
        else:
            self._election_elapsed += 1
            if self._election_elapsed >= self._randomized_timeout:
                self._election_elapsed = 0
                if self.id in self.voters:  # learners and removed nodes never campaign
                    self.campaign()

    def campaign(self, *, transfer: bool = False) -> None:
        """Start an election now (a pre-vote first, unless this is a leadership transfer).
        A node recovering from lost data never does: it would vote for itself."""
        if self.role is Role.LEADER or self.id not in self.voters or not self._helps_elect():
            return
        if self.config.pre_vote and not transfer:
            self._become_pre_candidate()
        else:
            self._become_candidate(transfer=transfer)

    def propose(self, data: bytes, kind: EntryKind = EntryKind.NORMAL) -> tuple[int, int]:
        """Append a command to the leader's log. Returns (term, index): the proposal
        succeeded iff the entry applied at that index has that term."""
        if self.role is not Role.LEADER:
            raise NotLeader(f"{self.id} is not the leader", self.leader)
        if self._transferee is not None:
            raise ProposalDropped(f"leadership transfer to {self._transferee} in progress")
        entry = Entry(self.term, self.log.last_index() + 1, kind, data)
        self._append_as_leader([entry])
        return entry.term, entry.index

    def propose_many(self, datas: Iterable[bytes]) -> list[tuple[int, int]]:
        """Append several commands at once (one replication round for all of them)."""
        if self.role is not Role.LEADER:
            raise NotLeader(f"{self.id} is not the leader", self.leader)
        if self._transferee is not None:
            raise ProposalDropped(f"leadership transfer to {self._transferee} in progress")
        first = self.log.last_index() + 1
        entries = [Entry(self.term, first + i, EntryKind.NORMAL, d) for i, d in enumerate(datas)]
        if entries:
            self._append_as_leader(entries)
        return [(e.term, e.index) for e in entries]

    def read_index(self, ctx: int, *, lease: bool = False, for_peer: NodeId | None = None) -> None:
        """Ask for a linearizable read point. A ReadState(ctx, index) appears in a later Ready
        once leadership is confirmed (by a quorum, or by a valid lease if lease=True).

        for_peer: the follower that will serve the read (it waits to apply index). Followers
        learn a new commit index only from the next append or heartbeat, so with the read
        state that peer gets a heartbeat carrying our commit index at once."""
        if self.role is not Role.LEADER:
            raise NotLeader(f"{self.id} is not the leader", self.leader)
        if for_peer is not None and for_peer != self.id:
            self._read_for[ctx] = for_peer
        if not self._committed_in_term():
            # Our commit index may lag the true one until our own term's entry commits.
            self._reads_before_commit.append(ctx)
            return
        self._register_read(ctx, lease=lease)

    def _register_read(self, ctx: int, *, lease: bool) -> None:
        if not self._read_needs_quorum(lease=lease):
            self._read_ready(ctx, self.log.committed)
            return
        self._reads.append(_PendingRead(ctx, self.log.committed, 0))
        self._reads_unsent = True

    def transfer_leadership(self, target: NodeId) -> None:
        """Hand leadership to target once its log is caught up (TimeoutNow)."""
        if self.role is not Role.LEADER:
            raise NotLeader(f"{self.id} is not the leader", self.leader)
        if target not in self.voters:
            raise BadRequest(f"{target!r} is not a voter")
        if target in (self.id, self._transferee):
            return
        if self.progress[target].recover_epoch:
            raise ProposalDropped(f"{target} is recovering lost data; it cannot lead yet")
        self._transferee = target
        self._transfer_elapsed = 0
        self._event(TraceKind.TRANSFER_STARTED, detail=target)
        if self.progress[target].match == self.log.last_index():
            self._send_timeout_now(target)
        else:
            self._send_append(target, send_if_empty=True)

    def compact(self, snapshot: Snapshot) -> None:
        """The shell took (and made durable) a state machine snapshot at snapshot.index, which
        must be applied already: drop the log up to it and send it to followers that lag."""
        self._base_membership = self.membership_at(snapshot.index)
        self.log.compact_to(snapshot.index, snapshot.term)
        self._snapshot = snapshot

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    def step(self, msg: Message) -> None:
        """Handle one message from a peer."""
        if msg.dst != self.id or msg.src == self.id:
            return  # misrouted
        # Messages from outside our configuration are still heard: a follower whose log holds
        # an uncommitted change may have to follow a leader the change removes. Leader-side
        # handlers ignore nodes without progress, and votes only count from voters.
        if msg.term > self.term:
            if not self._accept_higher_term(msg):
                return
        elif msg.term < self.term:
            self._on_lower_term(msg)
            return
        match msg:
            case RequestVote():
                self._on_request_vote(msg)
            case RequestVoteResponse():
                self._on_vote_response(msg)
            case AppendEntries():
                self._on_append(msg)
            case AppendEntriesResponse():
                self._on_append_response(msg)
            case Heartbeat():
                self._on_heartbeat(msg)
            case HeartbeatResponse():
                self._on_heartbeat_response(msg)
            case TimeoutNow():
                if self.role is not Role.LEADER:
                    self.campaign(transfer=True)
            case InstallSnapshot():
                self._on_install_snapshot(msg)

    def has_ready(self) -> bool:
        rlog = self.log
        return bool(
            self._msgs
            or self._msgs_after_persist
            or self._read_states
            or self._events
            or self._reads_due()
            or rlog.written < rlog.last_index()
            or (rlog.committed > rlog.applied and rlog.stable > rlog.applied)
            or self._install is not None
            or self._restore is not None
            or self._hard_state() != self._prev_hard
            or self._soft_state() != self._prev_soft
        )

    def ready(self) -> Ready:
        """Hand out everything to do, and take it as done: messages as sent, writes as
        issued (acknowledged later through persisted()), committed entries as applied."""
        if self._reads_due():
            self._broadcast_heartbeat(self._read_round_peers())
        rlog = self.log
        restore, self._restore = self._restore, None
        committed = tuple(rlog.applicable(self.config.max_apply_entries))
        if committed:
            rlog.applied_to(committed[-1].index)
        persist = self._take_persist()  # first: a new vote holds back every message
        soft = self._soft_state()
        rd = Ready(
            messages=tuple(self._msgs),
            persist=persist,
            committed=committed,
            read_states=tuple(self._read_states),
            soft_state=soft if soft != self._prev_soft else None,
            events=tuple(self._events),
            restore=restore,
        )
        self._msgs, self._read_states, self._events = [], [], []
        self._prev_soft = soft
        return rd

    def _take_persist(self) -> Persist | None:
        """The next storage write, with the messages that must wait until it is durable."""
        hard = self._hard_state()
        snapshot, self._install = self._install, None
        if snapshot is not None:
            # It replaces the whole log: entries of ours not written yet never will be.
            self._installing = snapshot
            self.log.written_to(self.log.last_index())
        entries = tuple(self.log.unwritten())
        new_vote = (hard.term, hard.vote) != (self._prev_hard.term, self._prev_hard.vote)
        after = self._msgs_after_persist
        if new_vote:
            # Nothing may leave before a new term or vote is durable.
            after, self._msgs = self._msgs + after, []
        self._msgs_after_persist = []
        changed = hard if hard != self._prev_hard else None
        self._prev_hard = hard
        if changed is None and not entries and snapshot is None and not after:
            return None
        ack: Stable | None = None
        if entries:
            self.log.written_to(entries[-1].index)
            ack = Stable(entries[-1].index, entries[-1].term)
        elif snapshot is not None:
            ack = Stable(snapshot.index, snapshot.term, snapshot=True)
        return Persist(
            hard_state=changed,
            entries=entries,
            snapshot=snapshot,
            must_sync=bool(entries) or snapshot is not None or new_vote,
            after_sync=tuple(after),
            ack=ack,
        )

    def persisted(self, ack: Stable) -> None:
        """A write handed out in a Ready is durable (writes are acknowledged in order)."""
        if ack.snapshot:
            self._installed(ack)
        else:
            self.log.stable_to(ack.index, ack.term)
        if self.role is Role.LEADER:
            self._self_progress_update()

    def status(self) -> RaftStatus:
        peers = {
            p: PeerStatus(
                pr.match, pr.next, pr.state.value, pr.recent_active, pr.recover_epoch != 0
            )
            for p, pr in self.progress.items()
        }
        return RaftStatus(
            self.id,
            self.role,
            self.term,
            self.leader,
            self.vote,
            self.log.committed,
            self.log.applied,
            self.log.last_index(),
            peers,
            self._lost_from,
        )

    @property
    def lost_from(self) -> int:
        """> 0 while recovering from lost synced data: entries from there on may be gone."""
        return self._lost_from

    # === hooks that tests override to plant bugs (mutation tests) ==========================

    def _may_commit(self, index: int) -> bool:
        """Figure 8: a leader commits by counting replicas only entries of its own term."""
        return self.log.term(index) == self.term

    def _log_ok_for_vote(self, msg: RequestVote) -> bool:
        """Election restriction: vote only for a candidate at least as up to date as us."""
        return self.log.is_up_to_date(msg.last_log_index, msg.last_log_term)

    def _read_needs_quorum(self, *, lease: bool) -> bool:
        """A read may skip the quorum round only on a single node or with a valid lease."""
        return len(self.voters) > 1 and not (lease and self._lease_valid())

    def _hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed, self._lost_from)

    def _helps_elect(self) -> bool:
        """Protocol-aware recovery: a node that lost synced entries may have acknowledged
        some that are committed, so its vote (for itself too) could elect a leader without
        them. It helps elect no one until it has them again."""
        return not self._lost_from

    def _hold_after_start(self, hard_state: HardState) -> int:
        """How many ticks after starting we help elect no one. A node that has a term may
        have acknowledged a leader's heartbeat just before it stopped, and that leader may
        still serve lease reads counting on our hold; a node that never had a term has made
        no promise, so a new cluster elects its first leader without waiting."""
        return self.config.election_ticks if hard_state.term > 0 else 0

    def _hold_ticks(self, hold_us: int) -> int:
        """A voter's vote hold in our ticks, rounded down (our own clock measures the lease)."""
        return hold_us // self.config.tick_us

    # === roles ==============================================================================

    def _become_follower(self, term: int, leader: NodeId | None) -> None:
        was_leader = self.role is Role.LEADER
        if term > self.term:
            self.term = term
            self.vote = None
        self.role = Role.FOLLOWER
        self.leader = leader
        self._reset()
        if was_leader:
            self._event(TraceKind.STEPPED_DOWN)
        self._event(TraceKind.BECAME_FOLLOWER, detail=leader or "")

    def _become_pre_candidate(self) -> None:
        self.role = Role.PRE_CANDIDATE
        self.leader = None
        self._reset()
        self._votes = {self.id: True}
        self._event(TraceKind.PRE_VOTE_STARTED)
        self._request_votes(pre_vote=True, transfer=False)

    def _become_candidate(self, *, transfer: bool) -> None:
        self.term += 1
        self.vote = self.id
        self.role = Role.CANDIDATE
        self.leader = None
        self._reset()
        self._votes = {self.id: True}
        self._event(TraceKind.ELECTION_STARTED)
        self._request_votes(pre_vote=False, transfer=transfer)

    def _become_leader(self) -> None:
        self.role = Role.LEADER
        self.leader = self.id
        self._reset()
        self._lease_disabled = False
        last = self.log.last_index()
        for peer in self.membership.members:
            pr = Progress(match=0, next=last + 1)
            if peer == self.id:
                pr.match = self.log.stable
                pr.state = ProgressState.REPLICATE
            self.progress[peer] = pr
        self._event(TraceKind.BECAME_LEADER)
        # A no-op in our own term lets us commit (and so learn the true commit index).
        self._append_as_leader([Entry(self.term, last + 1, EntryKind.NOOP)])

    def _reset(self) -> None:
        """Reset per-role volatile state (called on every role change)."""
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._reset_election_timer()
        self._votes = {}
        self._outdated = False
        self.progress = {}
        self._transferee = None
        self._lease_until = 0
        aborted = [r.ctx for r in self._reads] + self._reads_before_commit
        self._read_states.extend(ReadState(ctx, None) for ctx in aborted)
        self._reads, self._reads_before_commit = [], []
        self._read_for.clear()
        self._reads_unsent = False
        self._read_round = 0

    def _reset_election_timer(self) -> None:
        n = self.config.election_ticks
        jitter = self.config.election_jitter_ticks or n
        self._randomized_timeout = n + self._rng.randrange(jitter)

    # === elections ==========================================================================

    def _request_votes(self, *, pre_vote: bool, transfer: bool) -> None:
        term = self.term + 1 if pre_vote else self.term
        if self._tally() is quorum.VoteResult.WON:  # a single-node cluster
            self._won_vote(pre_vote)
            return
        for peer in self.voters:
            if peer != self.id:
                self._send(
                    RequestVote(
                        term,
                        self.id,
                        peer,
                        self.log.last_index(),
                        self.log.last_term(),
                        pre_vote,
                        transfer,
                    )
                )

    def _tally(self) -> quorum.VoteResult:
        return quorum.vote_result(self.voters, self._votes)

    def _won_vote(self, pre_vote: bool) -> None:
        if pre_vote:
            self._become_candidate(transfer=False)
        else:
            self._become_leader()

    def _in_lease(self) -> bool:
        """Leader stickiness (dissertation 4.2.3): we heard from a live leader within the minimum
        election timeout, so a vote request now comes from a disruptive node (for example one
        that was removed from the configuration without learning it) and is ignored. A leader
        ignores them too.

        Lease reads count on this hold (see _on_round_acked), so it is kept whatever happens
        meanwhile (a role change, a stale message with a higher term), and a restart does not
        end it: a node that may have acknowledged a heartbeat just before it stopped holds for
        an election timeout after it starts (_hold_after_start). Only leadership transfers
        (TimeoutNow, after which the old leader stops serving lease reads) pass."""
        return self.role is Role.LEADER or self._ticks < self._hold_until

    def _accept_higher_term(self, msg: Message) -> bool:
        """React to a message from a higher term. False means: ignore the message."""
        match msg:
            case RequestVote(transfer=transfer, pre_vote=pre_vote):
                if not transfer and self._in_lease():
                    return False  # a disruptive candidate; our leader is alive
                if not pre_vote:
                    self._become_follower(msg.term, None)
            case RequestVoteResponse(pre_vote=True, granted=True):
                pass  # a pre-vote granted for our prospective term
            case AppendEntries() | Heartbeat() | InstallSnapshot():
                self._become_follower(msg.term, msg.src)
            case _:
                self._become_follower(msg.term, None)
        return True

    def _on_lower_term(self, msg: Message) -> None:
        match msg:
            case AppendEntries() | Heartbeat():
                # A stale leader (e.g. healed from a partition): tell it our term so it steps
                # down. Without this, pre-vote would let it linger forever.
                self._send(AppendEntriesResponse(self.term, self.id, msg.src, False, 0))
            case RequestVote(pre_vote=True):
                self._send(RequestVoteResponse(self.term, self.id, msg.src, False, True))
            case _:
                pass

    def _on_request_vote(self, msg: RequestVote) -> None:
        if msg.pre_vote:
            # Would we vote for this candidate in a newer term? (State is unchanged.)
            can_vote = msg.term > self.term
        else:
            can_vote = self.vote == msg.src or (self.vote is None and self.leader is None)
        log_ok = self._log_ok_for_vote(msg)
        granted = can_vote and log_ok and self._helps_elect()
        reply_term = msg.term if msg.pre_vote and granted else self.term
        if granted and not msg.pre_vote:
            self.vote = msg.src
            self._election_elapsed = 0
        why = "" if granted or self._helps_elect() else " (recovering lost data)"
        self._event(
            TraceKind.VOTE_GRANTED if granted else TraceKind.VOTE_REJECTED,
            detail=f"{'pre-vote ' if msg.pre_vote else ''}{msg.src}{why}",
        )
        self._send(
            RequestVoteResponse(
                reply_term, self.id, msg.src, granted, msg.pre_vote, newer_log=not log_ok
            )
        )

    def _on_vote_response(self, msg: RequestVoteResponse) -> None:
        expected = Role.PRE_CANDIDATE if msg.pre_vote else Role.CANDIDATE
        if self.role is not expected:
            return
        if msg.pre_vote and msg.term != self.term + 1 and msg.granted:
            return
        self._votes.setdefault(msg.src, msg.granted)
        self._outdated = self._outdated or msg.newer_log
        result = self._tally()
        if result is quorum.VoteResult.WON:
            self._won_vote(msg.pre_vote)
        elif result is quorum.VoteResult.LOST:
            outdated = self._outdated
            self._become_follower(self.term, None)
            if outdated and not msg.pre_vote:
                # We lost a real election (its term is spent) and a voter's log is newer than
                # ours: we cannot win before catching up. Step back one more election timeout,
                # so a node that can win campaigns first instead of our next try bumping the
                # term under it again (without pre-vote, a stale candidate could keep a fit
                # one from winning for many rounds). A split vote or a lost pre-vote (no term
                # spent) steps back nothing.
                self._randomized_timeout += self.config.election_ticks

    # === replication (leader) ===============================================================

    def _append_as_leader(self, entries: list[Entry]) -> None:
        self.log.append(entries)  # counted for commit only once persisted (advance)
        self._event(TraceKind.APPENDED, index=entries[-1].index, detail=str(len(entries)))
        if any(e.kind is EntryKind.CONFIG for e in entries):
            self._refresh_membership()
        for peer in list(self.progress):
            if peer != self.id:
                self._send_append(peer, send_if_empty=False)

    def _self_progress_update(self) -> None:
        own = self.progress.get(self.id)
        if own is not None:
            own.maybe_update(self.log.stable)
        self._maybe_commit()

    def _send_append(self, peer: NodeId, *, send_if_empty: bool) -> bool:
        pr = self.progress[peer]
        if self._paused(peer, pr):
            return False
        prev = pr.next - 1
        prev_term = self.log.term(prev)
        if prev_term is None:
            return self._send_snapshot(peer, pr)
        entries = self.log.slice(
            pr.next, pr.next + self.config.max_batch_entries, self.config.max_batch_bytes
        )
        if not entries and not send_if_empty:
            return False
        self._send(
            AppendEntries(
                self.term, self.id, peer, prev, prev_term, tuple(entries), self.log.committed
            )
        )
        pr.sent(prev + len(entries), len(entries))
        return True

    def _paused(self, peer: NodeId, pr: Progress) -> bool:
        """May no append go to peer now? The window matters only to a replicating peer with
        appends in flight (computing it sorts the voters: not for every send)."""
        if pr.state is ProgressState.REPLICATE and pr.inflight:
            return len(pr.inflight) >= self._append_window(peer)
        return pr.is_paused(1)

    def _append_window(self, peer: NodeId) -> int:
        """Appends peer may have in flight. The followers a commit waits for (the fewest
        voters with the highest match that make a quorum with us) get max_inflight; the rest
        get one at a time, so each of their appends carries everything new since the last:
        fewer, larger writes and syncs where they cannot speed up a commit. A quorum follower
        that stops answering falls behind in match and the next one takes its place. A
        leadership transfer's target is always caught up at full speed."""
        if peer == self._transferee:
            return self.config.max_inflight
        needed = self._quorum_peers(lambda pr: pr.match)
        return self.config.max_inflight if peer in needed else 1

    def _quorum_peers(self, rank: Callable[[Progress], int]) -> list[NodeId]:
        """The fewest voters besides us whose acks make a quorum with ours: the highest by
        rank first (ties in voter order)."""
        others = sorted(
            (p for p in self.voters if p != self.id),
            key=lambda p: -rank(self.progress[p]) if p in self.progress else 0,
        )
        return others[: quorum.quorum_size(len(self.voters)) - (self.id in self.voters)]

    def _send_snapshot(self, peer: NodeId, pr: Progress) -> bool:
        """The entries peer needs are compacted: send our latest snapshot instead."""
        snap = self._snapshot
        if snap is None:
            raise AssertionError("log compacted without a snapshot")
        self._send(
            InstallSnapshot(
                self.term,
                self.id,
                peer,
                snap.index,
                snap.term,
                snap.voters,
                snap.data,
                snap.learners,
            )
        )
        pr.become_snapshot(snap.index, self._ticks)
        return True

    def _broadcast_append(self) -> None:
        for peer in list(self.progress):
            if peer != self.id:
                self._send_append(peer, send_if_empty=True)

    def _on_append_response(self, msg: AppendEntriesResponse) -> None:
        pr = self.progress.get(msg.src)
        if self.role is not Role.LEADER or pr is None:
            return
        pr.recent_active = True
        if not self._note_recovery(msg.src, pr, msg.lost_from, msg.recover_epoch):
            return
        if not msg.success:
            hint = msg.hint_index
            if msg.hint_term > 0:
                hint = self.log.find_conflict_by_term(msg.hint_index, msg.hint_term)
            if pr.maybe_decrease(msg.index, hint):
                if pr.state is ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(msg.src, send_if_empty=True)
            return
        updated = pr.maybe_update(msg.index)
        if pr.recovered():
            self._send_heartbeat(msg.src, pr)  # tells it that it has caught up
        if updated:
            if pr.state is ProgressState.PROBE or (
                pr.state is ProgressState.SNAPSHOT and pr.match >= pr.pending_snapshot
            ):
                pr.become_replicate()
            if self._maybe_commit() and self.role is not Role.LEADER:
                return  # we committed our own removal and stepped down
            # A new commit index is not broadcast on its own: followers learn it from the
            # next append or heartbeat (at most heartbeat_ticks later). Safety never needs
            # it, and under load every cycle's appends carry it anyway.
            while self._send_append(msg.src, send_if_empty=False):
                pass
            if msg.src == self._transferee and pr.match == self.log.last_index():
                self._send_timeout_now(msg.src)

    def _note_recovery(self, peer: NodeId, pr: Progress, lost_from: int, epoch: int) -> bool:
        """Take in what a follower's response says of its recovery. False: what the response
        says of the follower's log may be from before its loss (an old response, delayed in
        the network): not to be counted."""
        if epoch:
            if epoch not in (pr.recover_epoch, pr.recover_done):
                # A new recovery: forget what it acknowledged before, probe from its loss.
                pr.lost(epoch, lost_from, self.log.last_index())
                self._event(TraceKind.PEER_RECOVERING, index=lost_from, detail=peer)
                self._send_append(peer, send_if_empty=True)
            pr.recover_heard = self._ticks
            return True
        if not pr.recover_epoch:
            return True
        if self._ticks - pr.recover_heard <= self.config.election_ticks:
            return False
        # Nothing from its recovery for an election timeout, while it answers: the report we
        # took in was an old one (it had recovered, or restarted since). Back to normal.
        pr.recover_epoch = 0
        return True

    def _maybe_commit(self) -> bool:
        match = {p: pr.match for p, pr in self.progress.items()}
        index = quorum.committed_index(self.voters, match)
        if index <= self.log.committed or not self._may_commit(index):
            return False
        first_in_term = not self._committed_in_term()
        self.log.commit_to(index)
        self._event(TraceKind.COMMITTED, index=index)
        if first_in_term:
            self._release_reads_waiting_for_commit()
        if self.id not in self.voters and self.log.committed >= self._conf_index:
            # Our own removal is committed: hand over by stepping down (dissertation 4.2.2).
            self._broadcast_append()
            self._become_follower(self.term, None)
        return True

    def _committed_in_term(self) -> bool:
        return self.log.term(self.log.committed) == self.term

    # === heartbeats, check-quorum, reads ====================================================

    def _tick_leader(self) -> None:
        if self._transferee is not None:
            self._transfer_elapsed += 1
            if self._transfer_elapsed >= self.config.election_ticks:
                self._transferee = None  # the transfer timed out; resume normal service
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        if self._election_elapsed >= self.config.election_ticks:
            self._election_elapsed = 0
            if self.config.check_quorum and not self._quorum_active():
                self._event(TraceKind.QUORUM_LOST)
                self._become_follower(self.term, None)
                return
        if self._heartbeat_elapsed >= self.config.heartbeat_ticks:
            self._heartbeat_elapsed = 0
            self._broadcast_heartbeat()

    def _quorum_active(self) -> bool:
        active = {p: (p == self.id or pr.recent_active) for p, pr in self.progress.items()}
        for pr in self.progress.values():
            pr.recent_active = False
        return quorum.vote_result(self.voters, active) is quorum.VoteResult.WON

    def _read_round_peers(self) -> list[NodeId]:
        """Who gets a round sent for reads: the fewest voters whose acks make a quorum with
        ours, those that acknowledged the newest round first (ties in voter order). The
        periodic round still goes to everyone, so if one of these stops answering, the next
        tick's round confirms the reads and moves the choice to a peer that does answer."""
        return self._quorum_peers(lambda pr: pr.acked_round)

    def _broadcast_heartbeat(self, peers: list[NodeId] | None = None) -> None:
        """One numbered round, confirming every read registered so far: heartbeats to peers
        (default: every peer)."""
        self._round += 1
        self._round_sent_tick[self._round] = self._ticks
        if self._reads_unsent:
            for read in self._reads:
                if read.round == 0:
                    read.round = self._round
            self._read_round = self._round
        self._reads_unsent = False
        if (own := self.progress.get(self.id)) is not None:
            own.acked_round = self._round
            own.hold_until = self._ticks + self._hold_ticks(self.config.vote_hold_us)
        for peer in self.progress if peers is None else peers:
            if peer != self.id:
                self._send_heartbeat(peer, self.progress[peer])
        if len(self.voters) == 1:
            self._on_round_acked()

    def _on_heartbeat_response(self, msg: HeartbeatResponse) -> None:
        pr = self.progress.get(msg.src)
        if self.role is not Role.LEADER or pr is None:
            return
        pr.recent_active = True
        self._note_recovery(msg.src, pr, msg.lost_from, msg.recover_epoch)
        pr.probe_sent = False
        if pr.state is ProgressState.SNAPSHOT:
            if self._ticks - pr.snapshot_sent_tick >= self.config.election_ticks:
                pr.become_probe()  # the snapshot (or its ack) was probably lost: start over
        elif pr.state is ProgressState.REPLICATE and pr.inflight and self._paused(msg.src, pr):
            pr.inflight.popleft()  # an append may have been lost; let one more through
        if pr.match < self.log.last_index():
            self._send_append(msg.src, send_if_empty=True)
        if msg.read_seq > pr.acked_round:
            pr.acked_round = msg.read_seq
            sent = self._round_sent_tick.get(msg.read_seq)
            if sent is not None:
                pr.hold_until = sent + self._hold_ticks(msg.hold_us)
            self._on_round_acked()

    def _on_round_acked(self) -> None:
        rounds = {p: pr.acked_round for p, pr in self.progress.items()}
        confirmed = quorum.committed_index(self.voters, rounds)
        if confirmed <= 0:
            return
        if not self._lease_disabled:
            # Until a quorum's holds end, no other leader can be elected: a new one needs a
            # vote from that quorum (and we, while we lead, vote for no one). Each voter states
            # its own hold, so the lease is safe even when election timeouts differ.
            holds = {p: pr.hold_until for p, pr in self.progress.items()}
            lease = quorum.committed_index(self.voters, holds) - self.config.lease_drift_ticks
            self._lease_until = max(self._lease_until, lease)
        for old in [r for r in self._round_sent_tick if r < confirmed]:
            del self._round_sent_tick[old]
        still: list[_PendingRead] = []
        for read in self._reads:
            if 0 < read.round <= confirmed:
                self._read_ready(read.ctx, read.index)
                self._event(TraceKind.READ_CONFIRMED, index=read.index)
            else:
                still.append(read)
        self._reads = still
        if confirmed >= self._read_round:
            self._read_round = 0

    def _send_heartbeat(self, peer: NodeId, pr: Progress) -> None:
        """A heartbeat in the current round, carrying as much of our commit index as peer
        can hold (no more than its match), and whether its recovery is complete."""
        commit = min(pr.match, self.log.committed)
        self._send(Heartbeat(self.term, self.id, peer, commit, self._round, pr.recover_done))

    def _read_ready(self, ctx: int, index: int) -> None:
        self._read_states.append(ReadState(ctx, index))
        peer = self._read_for.pop(ctx, None)
        if peer is not None and (pr := self.progress.get(peer)) is not None:
            self._send_heartbeat(peer, pr)

    def _reads_due(self) -> bool:
        """Send a round for waiting reads now? Not while an earlier read round is in flight."""
        return self._reads_unsent and not self._read_round and self.role is Role.LEADER

    def _release_reads_waiting_for_commit(self) -> None:
        waiting, self._reads_before_commit = self._reads_before_commit, []
        for ctx in waiting:
            self._register_read(ctx, lease=False)

    def _lease_valid(self) -> bool:
        return (
            self.config.check_quorum
            and not self._lease_disabled
            and self._transferee is None
            and self._ticks < self._lease_until
        )

    def _send_timeout_now(self, peer: NodeId) -> None:
        # The target may win without anyone honouring our lease: no more lease reads this term.
        self._lease_disabled = True
        self._lease_until = 0
        self._send(TimeoutNow(self.term, self.id, peer))

    # === follower side ======================================================================

    def _on_append(self, msg: AppendEntries) -> None:
        self._follow(msg.src)
        if self._installing is not None or self._install is not None:
            return  # the log is being replaced by a snapshot; the leader will resend
        if msg.prev_log_index < self.log.committed:
            # Everything up to our commit index already matches the leader's log.
            self._reply_append(msg.src, True, self.log.committed)
            return
        if not self.log.match_term(msg.prev_log_index, msg.prev_log_term):
            hint = self.log.find_conflict_by_term(
                min(msg.prev_log_index, self.log.last_index()), msg.prev_log_term
            )
            self._send(
                AppendEntriesResponse(
                    self.term,
                    self.id,
                    msg.src,
                    False,
                    msg.prev_log_index,
                    hint,
                    self.log.term(hint) or 0,
                    self._lost_from,
                    self._recover_epoch,
                ),
                after_persist=True,
            )
            return
        last_new, truncated_from = self.log.maybe_append(msg.prev_log_index, msg.entries)
        if truncated_from is not None:
            self._event(TraceKind.TRUNCATED, index=truncated_from)
        if (truncated_from is not None and truncated_from <= self._conf_index) or any(
            e.kind is EntryKind.CONFIG for e in msg.entries
        ):
            self._refresh_membership()
        if msg.entries:
            self._event(TraceKind.APPENDED, index=last_new, detail=str(len(msg.entries)))
        if self.log.commit_to(min(msg.commit, last_new)):
            self._event(TraceKind.COMMITTED, index=self.log.committed)
        self._reply_append(msg.src, True, last_new)

    def _on_install_snapshot(self, msg: InstallSnapshot) -> None:
        self._follow(msg.src)
        if self._installing is not None or self._install is not None:
            return  # one install at a time; the leader resends once this one is acknowledged
        if msg.index <= self.log.committed:
            self._reply_append(msg.src, True, self.log.committed)  # nothing new in it
            return
        if self.log.match_term(msg.index, msg.snapshot_term):
            # Our log already holds the snapshot's last entry: just commit up to it.
            self.log.commit_to(msg.index)
            self._event(TraceKind.COMMITTED, index=msg.index)
            self._reply_append(msg.src, True, msg.index)
            return
        # Nothing of our log matches it: it replaces the log once durable (_installed).
        self._install = Snapshot(msg.index, msg.snapshot_term, msg.data, msg.voters, msg.learners)
        self._reply_append(msg.src, True, msg.index)

    def _installed(self, ack: Stable) -> None:
        """The leader's snapshot is durable: our log (unchanged while it was written, since
        appends were dropped) now starts after it, and the state machine restarts from it."""
        snap, self._installing = self._installing, None
        if snap is None or (snap.index, snap.term) != (ack.index, ack.term):
            raise AssertionError(f"acknowledged snapshot {ack} was not being installed")
        if snap.index <= self.log.committed:
            return  # heartbeats can only commit entries the leader knows match: never here
        self.log.reset_to_snapshot(snap.index, snap.term)
        self._snapshot = self._restore = snap
        if snap.voters:
            self._base_membership = Membership.of(snap.voters, snap.learners)
        self._refresh_membership()
        self._event(TraceKind.SNAPSHOT_INSTALLED, index=snap.index)

    def _reply_append(self, leader: NodeId, success: bool, index: int) -> None:
        self._send(
            AppendEntriesResponse(
                self.term,
                self.id,
                leader,
                success,
                index,
                lost_from=self._lost_from,
                recover_epoch=self._recover_epoch,
            ),
            after_persist=True,
        )

    def _on_heartbeat(self, msg: Heartbeat) -> None:
        self._follow(msg.src)
        if self._lost_from and msg.recovered == self._recover_epoch:
            self._recovered()
        # A heartbeat's commit counts on the leader knowing our log; while recovering it may
        # not (our log may hold stale entries past the loss): only appends commit then.
        if not self._lost_from and self.log.commit_to(min(msg.commit, self.log.last_index())):
            self._event(TraceKind.COMMITTED, index=self.log.committed)
        self._send(
            HeartbeatResponse(
                self.term,
                self.id,
                msg.src,
                msg.read_seq,
                self.config.vote_hold_us,
                self._lost_from,
                self._recover_epoch,
            )
        )

    def _recovered(self) -> None:
        """The leader holds everything we may have lost, and we hold its log through all it
        had when it learned of our loss: we may vote again."""
        self._event(TraceKind.RECOVERED, index=self._lost_from)
        self._lost_from = self._recover_epoch = 0

    def _follow(self, leader: NodeId) -> None:
        """A message from the leader of our term: follow it and reset the election timer."""
        if self.role is not Role.FOLLOWER:
            self._become_follower(self.term, leader)
        self.leader = leader
        self._election_elapsed = 0
        self._hold_until = self._ticks + self.config.election_ticks

    # === membership =========================================================================

    def _refresh_membership(self) -> None:
        """The log's configuration entries changed: find the latest one (rare: a full scan)."""
        conf_index, membership = 0, self._base_membership
        for i in range(self.log.last_index(), self.log.snapshot_index, -1):
            entry = self.log.entry(i)
            if entry.kind is EntryKind.CONFIG:
                conf_index, membership = i, decode_conf_entry(entry.data).membership
                break
        self._conf_index = conf_index
        if membership == self.membership:
            return
        self.membership = membership
        self._event(TraceKind.MEMBERSHIP_CHANGED, detail=f"voters {','.join(membership.voters)}")
        if self.role is Role.LEADER:
            last = self.log.last_index()
            for peer in membership.members:
                if peer not in self.progress:
                    self.progress[peer] = Progress(match=0, next=last + 1)
            for peer in [p for p in self.progress if p not in membership.members]:
                del self.progress[peer]

    # === plumbing ===========================================================================

    def _send(self, msg: Message, *, after_persist: bool = False) -> None:
        if after_persist or isinstance(msg, RequestVoteResponse | RequestVote):
            self._msgs_after_persist.append(msg)
        else:
            self._msgs.append(msg)

    def _event(self, kind: TraceKind, *, index: int = 0, detail: str = "") -> None:
        self._events.append(TraceEvent(kind, self.term, index, detail))

    def _soft_state(self) -> SoftState:
        return SoftState(self.leader, self.role)
