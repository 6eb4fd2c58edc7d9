"""NodeDriver: the one loop that runs a Raft node, for every shell (the asyncio server, the
embedded library and the simulator). Sans-IO: it calls its ports (driver/ports.py) and is
called with inputs; it never reads a clock, sleeps or awaits.

One cycle (run()) steps every queued input into the core (time first, then peer messages, then
all waiting proposals as one batch: group commit), then carries out each Ready in this fixed
order:

    soft state -> send messages -> write the persist (+ sync now if messages wait on it)
    -> restore a snapshot, apply committed entries, answer writes and reads
    -> sync the rest -> maybe start a snapshot

Storage writes are asynchronous: a write is appended at once, its sync runs through the
Scheduler (inline on the loop, or in simulated time), and when the sync completes every write
it covers is acknowledged to the core (RaftNode.persisted) and the messages that waited on it
leave. At most one sync is in flight; writes that arrive meanwhile share the next one.

A write succeeded iff the entry applied at its proposal's index carries the proposal's term;
another term there means it definitely failed; no answer before the caller's deadline means
its outcome is unknown. A disk error stops the driver for good (fail-stop: a failed sync is
never retried on the same data): every pending request fails and `failed` says why.

Disk full: what this node could not persist never enters the core, since once the core holds
entries they must be persisted. A leader refuses proposals with DiskFull (HTTP 507, NOT
applied); any node drops AppendEntries carrying entries, and InstallSnapshot, that it has no
room for, unacknowledged: to Raft a lost message, sent again, and taken once space is freed.
A snapshot of our own that cannot be written changes nothing: the log is kept and the
snapshot retried after a backoff (in ticks: SNAPSHOT_RETRY_TICKS, doubling).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from raftkv.core.membership import ConfChange, ConfEntry, decode_conf_entry
from raftkv.core.messages import AppendEntries, InstallSnapshot, Message
from raftkv.core.raft import RaftNode
from raftkv.core.ready import Persist, Ready, Stable
from raftkv.core.types import Entry, EntryKind, HardState, NodeId, Role, Snapshot
from raftkv.driver.compaction import SnapshotPolicy, SnapshotSchedule
from raftkv.driver.ports import (
    LogStore,
    MachinePort,
    Observer,
    Scheduler,
    Transport,
    Waiter,
)
from raftkv.errors import (
    CallerError,
    CorruptionError,
    DiskError,
    DiskFull,
    NodeStopped,
    NoQuorum,
    NotLeader,
    ProposalDropped,
    RaftkvError,
)

R = TypeVar("R")

# After a snapshot could not be written: ticks to wait before the next try, doubling up to
# the maximum (1 s to 60 s with the default 50 ms tick).
SNAPSHOT_RETRY_TICKS = (20, 1200)


@dataclass(slots=True)
class _SyncWaiter:
    """A write's acknowledgement and the messages that wait until every write up to seq
    (the number of appends issued when it was queued) is durable."""

    seq: int
    ack: Stable | None
    messages: tuple[Message, ...]


@dataclass(slots=True)
class _Inputs:
    """Inputs queued since the last cycle."""

    ticks: int = 0
    messages: list[Message] = field(default_factory=list)
    proposals: list[tuple[bytes, Waiter[Any]]] = field(default_factory=list)
    reads: list[tuple[int, bool, NodeId | None]] = field(default_factory=list)
    transfers: list[tuple[NodeId, Waiter[NodeId]]] = field(default_factory=list)
    conf_changes: list[tuple[ConfChange, Waiter[Any]]] = field(default_factory=list)

    def empty(self) -> bool:
        return not (
            self.ticks
            or self.messages
            or self.proposals
            or self.reads
            or self.transfers
            or self.conf_changes
        )


class NodeDriver(Generic[R]):
    """R: what the state machine's apply returns (the KV store's Result, an app's Outcome)."""

    def __init__(
        self,
        raft: RaftNode,
        machine: MachinePort[R],
        log: LogStore,
        transport: Transport,
        scheduler: Scheduler,
        observer: Observer,
        *,
        policy: SnapshotPolicy | None = None,
        rng: random.Random | None = None,
        durable: HardState | None = None,
    ) -> None:
        _check_recoverable(raft)
        self.raft = raft
        self.id: NodeId = raft.id
        self.machine = machine
        self._log = log
        self._transport = transport
        self._scheduler = scheduler
        self._observer = observer
        self._schedule = SnapshotSchedule(policy or SnapshotPolicy(), rng or random.Random(0))
        self._inputs = _Inputs()
        # Invariant: _written is the hard state last appended to the log; _hard the newest.
        # They differ only in commit, which is written lazily (with the next append, or at
        # close): a commit index lost in a crash is relearned from the leader.
        self._hard = self._written = durable or HardState()
        self._appends = 0  # appends issued so far
        self._synced = 0  # appends known durable
        self._syncing = False
        self._sync_waiters: list[_SyncWaiter] = []
        self._writes: dict[int, tuple[int, Waiter[Any]]] = {}  # index -> (term, waiter)
        self._reads: dict[int, Waiter[int]] = {}  # read ctx -> waiter
        self._reads_ready: list[tuple[int, int, Waiter[int]]] = []  # heap by index
        self._transfers: list[tuple[NodeId, Waiter[NodeId]]] = []
        self._next_ctx = 1
        self._snapshotting = False
        # The newest leader's snapshot written to the log. Until the core has it (its ack may
        # wait for a sync) the core's log may still start before it: a snapshot of ours is
        # only taken, and only marked, beyond it.
        self._installed = 0
        self._ticks = 0  # ticks stepped into the core so far (the driver's only clock)
        self._retry_ticks = SNAPSHOT_RETRY_TICKS[0]
        self._snapshot_not_before = 0  # tick before which no snapshot is tried (backoff)
        self._cycle_room = (0, 0)  # entries and bytes admitted into this cycle's write
        self._running = False
        self._closed = False
        self.failed: BaseException | None = None  # set when a disk error (or bug) stopped us

    # --- inputs (queued; the next run() steps them into the core) ------------------------

    def tick(self, ticks: int = 1) -> None:
        self._inputs.ticks += ticks

    def deliver(self, messages: Sequence[Message]) -> None:
        self._inputs.messages.extend(messages)

    def propose(self, data: bytes, waiter: Waiter[tuple[R, int]]) -> None:
        """Replicate one command: waiter gets (result, index) once applied here, or NotLeader
        / ProposalDropped (definitely not applied), or DiskError / NodeStopped."""
        if self._refuse(waiter):
            return
        self._inputs.proposals.append((data, waiter))

    def read(self, waiter: Waiter[int], *, lease: bool, for_peer: NodeId | None = None) -> None:
        """ReadIndex: waiter gets the read index once this leader confirmed its leadership (a
        quorum round, or its lease) and applied everything committed before the call."""
        if self._refuse(waiter):
            return
        ctx = self._next_ctx
        self._next_ctx += 1
        self._reads[ctx] = waiter
        self._inputs.reads.append((ctx, lease, for_peer))

    def transfer(self, target: NodeId, waiter: Waiter[NodeId]) -> None:
        """Hand leadership to target; waiter gets the new leader once this node sees it."""
        if not self._refuse(waiter):
            self._inputs.transfers.append((target, waiter))

    def change_membership(self, change: ConfChange, waiter: Waiter[tuple[ConfEntry, int]]) -> None:
        """One single-server membership change: waiter gets (the configuration entry, its
        index) once applied here."""
        if not self._refuse(waiter):
            self._inputs.conf_changes.append((change, waiter))

    # --- read-only views ---------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self.raft.role is Role.LEADER

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing for the core to hand out: run() would do nothing."""
        return self.failed is not None or (self._inputs.empty() and not self.raft.has_ready())

    @property
    def pending_writes(self) -> int:
        return len(self._writes) + len(self._inputs.proposals)

    @property
    def pending_reads(self) -> int:
        return len(self._reads) + len(self._reads_ready)

    @property
    def snapshotting(self) -> bool:
        return self._snapshotting

    # --- the cycle ---------------------------------------------------------------------

    def run(self) -> None:
        """Step every queued input into the core and carry out Readys until none is left.
        Re-entrant calls (from an inline sync's completion) return at once: the outer call
        goes on."""
        if self._running or self.failed is not None:
            return
        self._running = True
        raft, inputs = self.raft, self._inputs
        try:
            while True:
                if not inputs.empty():
                    self._step_inputs()
                elif not raft.has_ready():
                    return
                while self.failed is None and raft.has_ready():
                    self._handle(raft.ready())
                if self.failed is not None or inputs.empty():
                    return  # idle: the core just said it has nothing more
        except DiskError as e:
            self._fail(e)
        except Exception as e:
            self._fail(e)
            raise
        finally:
            self._running = False

    def close(self) -> None:
        """Stop: fail what is pending (NodeStopped) and write the newest commit index (best
        effort: it is volatile). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._fail_pending(self._stop_error())
        if self.failed is None and self._hard != self._written:
            try:
                self._log.append(self._hard, ())
                self._log.sync()
                self._written = self._hard
            except DiskError:
                pass

    def _handle(self, rd: Ready) -> None:
        if rd.soft_state is not None:
            self._on_soft_state(rd)
        if rd.messages:
            self._transport.send(rd.messages)
        persist = rd.persist
        if persist is not None:
            self._write(persist)
            if persist.after_sync:
                self._sync()  # someone waits on this write: its sync comes before applying
        if rd.restore is not None:
            self.machine.install_snapshot(rd.restore)
            self._observer.snapshot_installed(rd.restore)
        if rd.committed:
            self._apply(rd.committed)
        for rs in rd.read_states:
            waiter = self._reads.pop(rs.ctx, None)
            if waiter is None or waiter.done():
                continue
            if rs.index is None:
                waiter.set_exception(
                    NoQuorum("leadership was lost before a quorum confirmed the read; retry")
                )
            else:
                heapq.heappush(self._reads_ready, (rs.index, rs.ctx, waiter))
        self._serve_reads()
        if rd.events:
            self._observer.trace(rd.events)
        if persist is not None and self._must_sync(persist):
            self._sync()
        self._maybe_snapshot()

    # --- storage -----------------------------------------------------------------------

    def _write(self, persist: Persist) -> None:
        """Issue one write; queue its acknowledgement and messages behind the sync."""
        if persist.hard_state is not None:
            self._hard = persist.hard_state
        if persist.snapshot is not None:
            self._log.install_snapshot(persist.snapshot)  # durable on return
            self._installed = max(self._installed, persist.snapshot.index)
        if persist.entries or (self._must_sync(persist) and self._hard != self._written):
            hard = self._hard if self._hard != self._written else None
            self._log.append(hard, persist.entries)
            self._written = self._hard
            self._appends += 1
        if persist.ack is None and not persist.after_sync:
            return
        waiter = _SyncWaiter(self._appends, persist.ack, persist.after_sync)
        if self._appends == self._synced and not self._sync_waiters:
            self._release(waiter)  # nothing it depends on is still in flight
        else:
            self._sync_waiters.append(waiter)

    def _must_sync(self, persist: Persist) -> bool:
        """Must this write be made durable now (the core says so: entries, a snapshot, a new
        term or vote)? A write that only moves the commit index waits for the next one."""
        return persist.must_sync

    def _sync(self) -> None:
        """Start a sync covering every append so far, unless one is in flight (its
        completion starts the next)."""
        if self._syncing or self._appends == self._synced or self.failed is not None:
            return
        self._syncing = True
        target = self._appends
        self._scheduler.sync(self._log.sync, lambda error: self._sync_done(target, error))

    def _sync_done(self, target: int, error: BaseException | None) -> None:
        self._syncing = False
        if error is not None:
            self._fail(error)
            return
        self._synced = target
        while self._sync_waiters and self._sync_waiters[0].seq <= target:
            self._release(self._sync_waiters.pop(0))
        if self._sync_waiters:
            self._sync()
        self.run()  # the core may have more to do (commit, apply); no-op if running

    def _release(self, waiter: _SyncWaiter) -> None:
        if waiter.ack is not None:
            self.raft.persisted(waiter.ack)
        if waiter.messages:
            self._transport.send(waiter.messages)

    # --- applying ----------------------------------------------------------------------

    def _apply(self, entries: tuple[Entry, ...]) -> None:
        machine, writes = self.machine, self._writes
        data_bytes = 0
        for entry in entries:
            result: Any = None
            if entry.kind is EntryKind.NORMAL:
                result = machine.apply(entry.index, entry.data)
                data_bytes += len(entry.data)
            else:
                machine.apply_noop(entry.index)
                if entry.kind is EntryKind.CONFIG:  # answers change_membership()
                    result = decode_conf_entry(entry.data)
            waiter = writes.pop(entry.index, None)
            if waiter is None:
                continue
            term, fut = waiter
            if fut.done():
                continue
            if term == entry.term and result is not None:
                fut.set_result((result, entry.index))
            else:
                fut.set_exception(
                    ProposalDropped(
                        f"leadership changed: index {entry.index} holds another leader's entry, "
                        "so this write was NOT applied; retry it"
                    )
                )
        self._schedule.applied(len(entries), data_bytes)
        self._observer.applied(entries)

    def _serve_reads(self) -> None:
        ready, applied = self._reads_ready, self.machine.applied_index
        while ready and ready[0][0] <= applied:
            index, _, waiter = heapq.heappop(ready)
            if not waiter.done():
                waiter.set_result(index)

    # --- snapshots ---------------------------------------------------------------------

    def _maybe_snapshot(self) -> None:
        """Start a snapshot of the state machine when the schedule says so. The view is
        taken here (exactly the state at the applied index); encoding and writing it run
        through the scheduler's background, off the loop."""
        if (
            self._snapshotting
            or self.failed is not None
            or self._ticks < self._snapshot_not_before
            or not self._schedule.due()
        ):
            return
        index = self.machine.applied_index
        term = self.raft.log.term(index)
        if term is None or index <= max(self.raft.log.snapshot_index, self._installed):
            return
        members = self.raft.membership_at(index)
        try:
            source = self.machine.snapshot_view()
        except Exception as e:  # the application's own snapshot code failed: keep the log
            self._snapshot_not_written(index, e)
            return
        covered = self._schedule.mark()
        taken: list[Snapshot] = []

        def job() -> None:
            snap = Snapshot(index, term, source.encode(), members.voters, members.learners)
            self._log.write_snapshot_file(snap)
            taken.append(snap)

        def done(error: BaseException | None) -> None:
            self._snapshotting = False
            if error is not None and self._log.failed is not None:
                self._fail(self._log.failed)  # not just this file: the storage failed
            elif error is not None or not taken:
                self._snapshot_not_written(index, error or RuntimeError("no snapshot"))
            else:
                self._snapshot_written(taken[0], covered)
            if not self._closed:
                self._maybe_snapshot()  # one may have come due meanwhile: no Ready may follow

        self._snapshotting = True
        self._scheduler.background(job, done)

    def _snapshot_not_written(self, index: int, error: BaseException) -> None:
        """Nothing changed: keep the log, serve on, and try again after a backoff."""
        self._snapshot_not_before = self._ticks + self._retry_ticks
        self._retry_ticks = min(2 * self._retry_ticks, SNAPSHOT_RETRY_TICKS[1])
        self._observer.snapshot_failed(index, error)

    def _snapshot_written(self, snap: Snapshot, covered: tuple[int, int]) -> None:
        """Our snapshot is durable: the log may now start after it."""
        if self.failed is not None or self._closed:
            return
        rlog = self.raft.log
        if (
            snap.index <= max(rlog.snapshot_index, self._installed)
            or rlog.term(snap.index) != snap.term
        ):
            return  # the leader's snapshot replaced the log meanwhile
        try:
            self._log.mark_snapshot(snap)
            self.raft.compact(snap)
            self._log.compact(snap.index)
        except DiskError as e:
            self._fail(e)
            return
        self._schedule.taken(len(snap.data), covered)
        self._retry_ticks = SNAPSHOT_RETRY_TICKS[0]
        self._observer.snapshot_taken(snap)

    # --- inputs into the core ----------------------------------------------------------

    def _step_inputs(self) -> None:
        raft, inputs = self.raft, self._inputs
        # Time first: after a stall every missed tick lands before any message or request,
        # so an expired lease or a lost quorum is noticed before serving anything.
        ticks, inputs.ticks = inputs.ticks, 0
        self._ticks += ticks
        for _ in range(ticks):
            raft.tick()
        self._cycle_room = (0, 0)  # this cycle's inputs become one write: their sizes add up
        if inputs.messages:
            msgs, inputs.messages = inputs.messages, []
            for msg in msgs:
                if self._admit(msg):
                    raft.step(msg)
        if inputs.proposals:
            props, inputs.proposals = inputs.proposals, []
            self._propose([(d, w) for d, w in props if not w.done()])
        if inputs.reads:
            reads, inputs.reads = inputs.reads, []
            for ctx, lease, peer in reads:
                try:
                    raft.read_index(ctx, lease=lease, for_peer=peer)
                except CallerError as e:
                    waiter = self._reads.pop(ctx, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_exception(e)
        if inputs.conf_changes:
            changes, inputs.conf_changes = inputs.conf_changes, []
            for change, cw in changes:
                if cw.done():
                    continue
                try:
                    term, index = raft.propose_conf_change(change)
                except CallerError as e:
                    cw.set_exception(e)
                    continue
                self._writes[index] = (term, cw)
        if inputs.transfers:
            transfers, inputs.transfers = inputs.transfers, []
            for target, tw in transfers:
                if tw.done():
                    continue
                try:
                    raft.transfer_leadership(target)
                except CallerError as e:
                    tw.set_exception(e)
                    continue
                if target == self.id:
                    tw.set_result(self.id)
                else:
                    self._transfers.append((target, tw))

    def _room_for(self, entries: int, data_bytes: int) -> None:
        """Raise DiskFull unless this cycle's write can take that much more."""
        total = (self._cycle_room[0] + entries, self._cycle_room[1] + data_bytes)
        self._log.check_room(*total)
        self._cycle_room = total

    def _admit(self, msg: Message) -> bool:
        """Step msg into the core? Not entries or a snapshot we have no room to persist."""
        try:
            match msg:
                case AppendEntries(entries=entries) if entries:
                    self._room_for(len(entries), sum(len(e.data) for e in entries))
                case InstallSnapshot(data=data):
                    self._log.check_snapshot_room(len(data))
        except DiskFull as e:
            self._observer.no_room(e, msg)
            return False
        return True

    def _propose(self, props: list[tuple[bytes, Waiter[Any]]]) -> None:
        if not props:
            return
        try:
            if self.is_leader:  # a follower's NotLeader says more than DiskFull
                self._room_for(len(props), sum(len(data) for data, _ in props))
            placed = self.raft.propose_many([data for data, _ in props])
        except DiskFull as e:
            self._observer.no_room(e, None)
            self._observer.proposed(0, len(props))
            for _, waiter in props:
                waiter.set_exception(e)
            return
        except (NotLeader, ProposalDropped) as e:
            self._observer.proposed(0, len(props))
            for _, waiter in props:
                waiter.set_exception(e)
            return
        self._observer.proposed(len(props), 0)
        for (term, index), (_, waiter) in zip(placed, props, strict=True):
            self._writes[index] = (term, waiter)

    def _on_soft_state(self, rd: Ready) -> None:
        soft = rd.soft_state
        assert soft is not None
        self._observer.soft_state(soft, self.raft.term)
        if soft.leader is not None and soft.leader != self.id and self._transfers:
            for _, waiter in self._transfers:
                if not waiter.done():
                    waiter.set_result(soft.leader)
            self._transfers.clear()

    # --- stopping ----------------------------------------------------------------------

    def _refuse(self, waiter: Waiter[Any]) -> bool:
        if self.failed is None and not self._closed:
            return False
        waiter.set_exception(self._stop_error())
        return True

    def _fail(self, error: BaseException) -> None:
        if self.failed is None:
            self.failed = error
        self._fail_pending(self._stop_error())

    def _stop_error(self) -> RaftkvError:
        if isinstance(self.failed, DiskError):
            return DiskError(f"node {self.id} stopped after a disk failure: {self.failed}")
        if self.failed is not None:
            return NodeStopped(f"node {self.id} stopped after an internal error")
        return NodeStopped(f"node {self.id} is shutting down")

    def _fail_pending(self, exc: RaftkvError) -> None:
        inputs = self._inputs
        waiters: list[Waiter[Any]] = [w for _, w in self._writes.values()]
        waiters += self._reads.values()
        waiters += [w for _, _, w in self._reads_ready]
        waiters += [w for _, w in self._transfers]
        waiters += [w for _, w in inputs.proposals]
        waiters += [w for _, w in inputs.transfers]
        waiters += [w for _, w in inputs.conf_changes]
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(exc)
        self._writes.clear()
        self._reads.clear()
        self._reads_ready.clear()
        self._transfers.clear()
        inputs.proposals.clear()
        inputs.transfers.clear()
        inputs.conf_changes.clear()
        inputs.reads.clear()


def _check_recoverable(raft: RaftNode) -> None:
    """A node that lost synced log data recovers it from the other voters (RaftNode waits
    for them): the only voter has no one to recover it from, and must not go on without it."""
    if raft.lost_from and raft.voters == (raft.id,):
        raise CorruptionError(
            f"node {raft.id} lost synced log data (entries from index {raft.lost_from} on) and "
            "is the only voter: no other node holds a copy. Restore a backup (raftkv snapshot "
            "restore) into an empty data directory, or start again from an empty one"
        )
