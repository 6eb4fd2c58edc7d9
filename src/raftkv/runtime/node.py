"""The Ready loop: the one task that drives a RaftNode, its storage and its KvStore.

Each cycle: take every queued input (peer messages, ticks, proposals, reads, transfers) and
step it into the core (all waiting proposals go into one propose_many: group commit), then
handle one Ready in the fixed order:

    send messages -> persist (one fdatasync) -> send messages_after_persist
    -> apply committed -> answer read states -> advance

(a leader applies and answers committed entries that are already durable here before its
fsync; see _handle_ready and _persist_inline for where the fsync runs).

While a persist runs, the loop only queues new inputs (the core must not be touched between
ready() and advance()). Nothing else in the process calls into the core except read-only
accessors (status, log, role), which are safe between awaits.

A write succeeded iff the entry applied at its proposal's index carries the proposal's term;
another term there means it definitely failed; no answer before the caller's timeout means
its outcome is unknown. On DiskError the node stops acknowledging: every pending request
fails and the loop ends (the server then shuts the node down).

Disk full: what this node could not persist never enters the core (see DiskRoom): a leader
refuses proposals with DiskFull (HTTP 507), any node drops entries and snapshots sent to it,
unacknowledged, until its storage has room again.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from time import perf_counter
from typing import Any, Generic, Protocol, TypeVar

from typing_extensions import TypeVar as DefaultTypeVar

from raftkv.core.membership import ConfChange, ConfEntry, decode_conf_entry
from raftkv.core.messages import Message
from raftkv.core.raft import RaftNode
from raftkv.core.ready import Ready
from raftkv.core.types import (
    Entry,
    EntryKind,
    HardState,
    NodeId,
    Role,
    Snapshot,
    SoftState,
    TraceEvent,
)
from raftkv.errors import (
    CallerError,
    DiskError,
    DiskFull,
    NoQuorum,
    NotLeader,
    ProposalDropped,
    RaftkvError,
)
from raftkv.kv.results import Result
from raftkv.kv.store import KvStore
from raftkv.runtime.clock import TickClock
from raftkv.runtime.disk_room import DiskRoom
from raftkv.runtime.events import EntryDescriber, EventHub
from raftkv.runtime.metrics import NodeMetrics
from raftkv.storage import LogStorage

log = logging.getLogger("raftkv.node")

LOG_TAIL = 20  # entries shown in "state" events
# A leader with at most this many writes in flight fsyncs on the loop (see _persist_inline).
# Measured with bench/compare --baseline-src (A/B, 3 rounds, 64 clients): inline up to 64+
# writes gave 7,947 writes/s against 7,485/s with the thread hop above 1 write (2026-11-27).
INLINE_SYNC_MAX_WRITES = 256


class NodeStopped(CallerError):
    """The node is shutting down (or has stopped); try another node."""


_R_co = TypeVar("_R_co", covariant=True)


class Applier(Protocol[_R_co]):
    """What the Ready loop applies committed entries to: the KvStore, or an embedded app's
    state machine (raftkv.embed). apply must be deterministic and must not return None."""

    @property
    def applied_index(self) -> int: ...

    @property
    def revision(self) -> int:
        """Changes whenever applying changed what watchers observe (watchers are woken)."""
        ...

    def apply(self, index: int, data: bytes) -> _R_co: ...

    def apply_noop(self, index: int) -> None: ...


class RuntimeHooks(Protocol):
    """Optional extensions of the Ready loop (the KV server runs without any)."""

    def on_soft_state(self, soft: SoftState, term: int) -> None:
        """The role or the known leader changed. Must not block or touch the core."""

    def install_snapshot(self, snapshot: Snapshot) -> None:
        """Replace the state machine by a (durable) snapshot the leader sent."""

    async def after_advance(self, raft: RaftNode, storage: LogStorage) -> None:
        """Once per Ready, after advance: may snapshot the state machine and compact."""


M = DefaultTypeVar("M", bound=Applier[Any], default=KvStore)
R = DefaultTypeVar("R", default=Result)
WriteFuture = asyncio.Future[tuple[Any, int]]


class Inbox:
    """Inputs waiting for the next cycle. Only appended to from the event loop's thread."""

    def __init__(self, clock: TickClock | None = None) -> None:
        self.messages: list[Message] = []
        self.ticks = 0  # ticks added by hand; with a clock, elapsed time decides instead
        self.clock = clock
        self.proposals: list[tuple[bytes, WriteFuture]] = []
        self.reads: list[tuple[int, bool, NodeId | None]] = []  # (ctx, lease, for peer)
        self.transfers: list[tuple[NodeId, asyncio.Future[NodeId]]] = []
        self.conf_changes: list[tuple[ConfChange, WriteFuture]] = []
        self._wake = asyncio.Event()

    def add_messages(self, msgs: list[Message]) -> None:
        self.messages.extend(msgs)
        self._wake.set()

    def add_tick(self) -> None:
        self.ticks += 1
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def empty(self) -> bool:
        return not (
            self.messages
            or self.ticks
            or self.proposals
            or self.reads
            or self.transfers
            or self.conf_changes
        )

    async def wait(self) -> None:
        """Return once something was queued (or wake() was called)."""
        self._wake.clear()
        if self.empty():
            await self._wake.wait()


class RaftRuntime(Generic[M, R]):
    """M: the state machine (an Applier returning R). The KV server's is RaftRuntime[KvStore]."""

    def __init__(
        self,
        raft: RaftNode,
        kv: M,
        storage: LogStorage,
        *,
        inbox: Inbox,
        send: Callable[[Sequence[Message]], None],
        hub: EventHub,
        metrics: NodeMetrics,
        hooks: RuntimeHooks | None = None,
    ) -> None:
        self._raft = raft
        self._kv = kv
        self._hooks = hooks
        self._storage = storage
        self._inbox = inbox
        self._send = send
        self._hub = hub
        self._metrics = metrics
        self._room = DiskRoom(raft.id, storage)
        self.id: NodeId = raft.id
        # Invariant: _durable is the hard state on disk; _hard is the newest one. They differ
        # only in commit, which is persisted lazily (with the next entries, or at shutdown):
        # a commit index lost in a crash is relearned from the leader (etcd's MustSync).
        self._durable: HardState = storage.hard_state
        self._hard: HardState = storage.hard_state
        self._writes: dict[int, tuple[int, WriteFuture]] = {}  # index -> (term, future)
        self._reads: dict[int, asyncio.Future[int]] = {}  # read ctx -> future
        self._reads_ready: list[tuple[int, int, asyncio.Future[int]]] = []  # heap by index
        self._transfers: list[tuple[NodeId, asyncio.Future[NodeId]]] = []
        self._next_ctx = 1
        self._role = raft.role
        self._leader = raft.leader
        self._watchers: set[asyncio.Event] = set()
        self._describer = EntryDescriber()
        self._last_state: tuple[Any, ...] = ()
        self._stopping = False
        self.failed: BaseException | None = None  # set when the loop died (disk or bug)
        metrics.bind_state(
            term=lambda: raft.term,
            role=lambda: raft.role,
            commit_index=lambda: raft.log.committed,
            applied_index=lambda: self._kv.applied_index,
            last_index=lambda: self.last_index,
            pending_writes=lambda: len(self._writes) + len(self._inbox.proposals),
            pending_reads=lambda: len(self._reads) + len(self._reads_ready),
            snapshot_index=lambda: raft.log.snapshot_index,
            voters=lambda: len(raft.voters),
            learners=lambda: len(raft.learners),
        )
        metrics.bind_storage(storage.stats)

    # --- read-only views (safe at any await point) -------------------------------------

    @property
    def kv(self) -> M:
        return self._kv

    @property
    def raft(self) -> RaftNode:
        return self._raft

    @property
    def role(self) -> Role:
        return self._raft.role

    @property
    def is_leader(self) -> bool:
        return self._raft.role is Role.LEADER

    @property
    def leader(self) -> NodeId | None:
        return self._raft.leader

    @property
    def term(self) -> int:
        return self._raft.term

    @property
    def commit_index(self) -> int:
        return self._raft.log.committed

    @property
    def applied_index(self) -> int:
        return self._kv.applied_index

    @property
    def last_index(self) -> int:
        return self._raft.log.last_index()

    @property
    def running(self) -> bool:
        return not self._stopping and self.failed is None

    def best_transfer_target(self, usable: Callable[[NodeId], bool]) -> NodeId | None:
        """The most caught-up follower for which usable(id) holds (leader only)."""
        progress = self._raft.progress
        candidates = [p for p in progress if p != self.id and usable(p)]
        return max(candidates, key=lambda p: (progress[p].match, p), default=None)

    # --- requests -----------------------------------------------------------------------

    async def propose(self, data: bytes) -> tuple[R, int]:
        """Replicate one encoded command; (result, index) once applied here. Raises NotLeader
        / ProposalDropped (definitely not applied) or DiskError / NodeStopped."""
        return await self.submit(data)

    def submit(self, data: bytes) -> WriteFuture:
        """propose() without a coroutine (the HTTP fast path): the future resolves to what
        propose() returns or raises. Cancelling it only stops waiting."""
        self._check_running()
        fut: WriteFuture = asyncio.get_running_loop().create_future()
        self._inbox.proposals.append((data, fut))
        self._inbox.wake()
        return fut

    async def read_barrier(self, *, lease: bool, for_peer: NodeId | None = None) -> int:
        """ReadIndex: return once this leader confirmed its leadership (a quorum round, or
        its lease) and applied everything committed before the call. Returns that index."""
        return await self.submit_read(lease=lease, for_peer=for_peer)

    def submit_read(self, *, lease: bool, for_peer: NodeId | None = None) -> asyncio.Future[int]:
        """read_barrier() without a coroutine: the future resolves to its index or error."""
        self._check_running()
        ctx = self._next_ctx
        self._next_ctx += 1
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._reads[ctx] = fut
        self._inbox.reads.append((ctx, lease, for_peer))
        self._inbox.wake()
        return fut

    async def transfer(self, target: NodeId) -> NodeId:
        """Hand leadership to target; returns the new leader once this node has seen it."""
        self._check_running()
        fut: asyncio.Future[NodeId] = asyncio.get_running_loop().create_future()
        self._inbox.transfers.append((target, fut))
        self._inbox.wake()
        return await fut

    async def change_membership(self, change: ConfChange) -> tuple[ConfEntry, int]:
        """Propose one single-server membership change (leader only); (the committed
        configuration entry, its index) once applied here. Raises like propose()."""
        self._check_running()
        fut: WriteFuture = asyncio.get_running_loop().create_future()
        self._inbox.conf_changes.append((change, fut))
        self._inbox.wake()
        entry, index = await fut
        return entry, index

    def notify_watchers(self) -> None:
        """Wake every watcher (the store changed outside apply: a snapshot was installed)."""
        for ev in self._watchers:
            ev.set()

    @contextmanager
    def watcher(self) -> Iterator[asyncio.Event]:
        """An event set whenever applying changed the store's revision (or on shutdown)."""
        ev = asyncio.Event()
        self._watchers.add(ev)
        try:
            yield ev
        finally:
            self._watchers.discard(ev)

    def _check_running(self) -> None:
        if self.failed is not None or self._stopping:
            raise self._stop_error()

    # --- the loop -----------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to end after the Ready in flight (if any)."""
        self._stopping = True
        self._inbox.wake()

    async def run(self) -> None:
        try:
            while not self._stopping:
                if self._inbox.empty() and not self._raft.has_ready():
                    await self._inbox.wait()
                    continue
                self._step_inputs()
                if self._raft.has_ready():
                    await self._handle_ready()
        except DiskError as e:
            log.critical(
                "%s: DISK FAILURE, node stops acknowledging and shuts down: %s", self.id, e
            )
            self.failed = e
        except Exception as e:
            log.critical("%s: Ready loop crashed, node shuts down", self.id, exc_info=True)
            self.failed = e
        finally:
            self._stopping = True
            self._fail_pending(self._stop_error())
            for ev in self._watchers:
                ev.set()
        if self.failed is None:
            await self._flush_commit()

    def _stop_error(self) -> RaftkvError:
        if isinstance(self.failed, DiskError):
            return DiskError(f"node {self.id} stopped after a disk failure: {self.failed}")
        if self.failed is not None:
            return NodeStopped(f"node {self.id} stopped after an internal error")
        return NodeStopped(f"node {self.id} is shutting down")

    async def _flush_commit(self) -> None:
        """Persist a lazily kept commit index at shutdown (best effort: it is volatile)."""
        if self._hard != self._durable and self._storage.failed is None:
            try:
                await asyncio.to_thread(self._storage.save, self._hard, ())
                self._durable = self._hard
            except DiskError as e:
                log.error("%s: could not save the commit index at shutdown: %s", self.id, e)

    def _step_inputs(self) -> None:
        raft, inbox = self._raft, self._inbox
        # Time first: after a stall every missed tick lands before any message or request
        # is handled, so an expired lease or a lost quorum is noticed before serving anything.
        ticks, inbox.ticks = inbox.ticks, 0
        if inbox.clock is not None:
            ticks = inbox.clock.take()
        for _ in range(ticks):
            raft.tick()
        self._room.new_cycle()
        if inbox.messages:
            msgs, inbox.messages = inbox.messages, []
            for msg in msgs:
                if self._room.admit(msg):
                    raft.step(msg)
        if inbox.proposals:
            props, inbox.proposals = inbox.proposals, []
            self._propose(raft, [(d, f) for d, f in props if not f.done()])
        if inbox.reads:
            reads, inbox.reads = inbox.reads, []
            for ctx, lease, peer in reads:
                try:
                    raft.read_index(ctx, lease=lease, for_peer=peer)
                except CallerError as e:
                    fut = self._reads.pop(ctx, None)
                    if fut is not None and not fut.done():
                        fut.set_exception(e)
        if inbox.conf_changes:
            changes, inbox.conf_changes = inbox.conf_changes, []
            for change, cfut in changes:
                if cfut.done():
                    continue
                try:
                    term, index = raft.propose_conf_change(change)
                except CallerError as e:
                    cfut.set_exception(e)
                    continue
                self._writes[index] = (term, cfut)
        if inbox.transfers:
            transfers, inbox.transfers = inbox.transfers, []
            for target, tfut in transfers:
                if tfut.done():
                    continue
                try:
                    raft.transfer_leadership(target)
                except CallerError as e:
                    tfut.set_exception(e)
                    continue
                if target == self.id:
                    tfut.set_result(self.id)
                else:
                    self._transfers.append((target, tfut))

    def _propose(self, raft: RaftNode, props: list[tuple[bytes, WriteFuture]]) -> None:
        if not props:
            return
        try:
            if raft.role is Role.LEADER:  # a follower's NotLeader says more than DiskFull
                self._room.check(len(props), sum(len(data) for data, _ in props))
            placed = raft.propose_many([data for data, _ in props])
        except (NotLeader, ProposalDropped, DiskFull) as e:
            self._metrics.proposals_failed.inc(len(props))
            for _, fut in props:
                fut.set_exception(e)
            return
        self._metrics.proposals.inc(len(props))
        self._metrics.proposal_batch.observe(len(props))
        for (term, index), (_, fut) in zip(placed, props, strict=True):
            self._writes[index] = (term, fut)

    async def _handle_ready(self) -> None:
        raft = self._raft
        rd = raft.ready()
        if rd.soft_state is not None:
            self._on_soft_state(rd.soft_state)
        deferred: tuple[Message, ...] = ()
        committed = rd.committed
        reads_done = False
        if self._needs_persist(rd) or self._hub.active:
            self._send(rd.messages)  # before the fsync: followers persist in parallel with us
            # A follower syncs and answers first (its answer is on every write's commit
            # path) and applies after. A leader applies what is already durable first:
            durable, committed = self._split_durable(rd) if self.is_leader else ((), committed)
            if durable or rd.read_states:
                # Entries this node already holds on disk (a leader's previous batch, now
                # committed) are answered before this Ready's fsync, not after it: the
                # ordering rule is about entries that are not durable here yet.
                if durable:
                    self._apply(durable)
                self._on_read_states(rd)
                self._serve_reads()
                reads_done = True
                if self._persist_inline():
                    await asyncio.sleep(0)  # the answers go out before the loop blocks
            yielded = await self._persist(rd)
            self._send(rd.messages_after_persist)
        else:
            # Nothing to make durable (at most the commit index moved, kept lazily). Apply
            # first and send after the clients' answers went out: no Raft rule orders the two,
            # and a follower woken by our send could otherwise preempt us on a busy core
            # before the response is written (a commit-only Ready is on the write path).
            if rd.hard_state is not None:
                self._hard = rd.hard_state
            yielded = False
            deferred = rd.messages + rd.messages_after_persist
        hooks = self._hooks
        if rd.snapshot is not None and hooks is not None:
            hooks.install_snapshot(rd.snapshot)
            self._metrics.snapshots_installed.inc()
        if committed:
            self._apply(committed)
        if not reads_done:
            self._on_read_states(rd)
        if rd.events:
            self._publish_trace(rd.events)
        raft.advance(rd)
        self._serve_reads()
        if hooks is not None:
            compacted = raft.log.snapshot_index
            await hooks.after_advance(raft, self._storage)
            if raft.log.snapshot_index > compacted:  # the hooks took a snapshot
                self._metrics.snapshots_taken.inc()
        if self._hub.active:
            self._publish_state()
        if deferred:
            # FIFO: the woken request handlers run (and answer) first, then these go out,
            # and the loop resumes only after them, so per-peer message order is kept.
            asyncio.get_running_loop().call_soon(self._send, deferred)
        if not yielded or deferred:
            await asyncio.sleep(0)  # let the transport and HTTP run between cycles

    def _split_durable(self, rd: Ready) -> tuple[tuple[Entry, ...], tuple[Entry, ...]]:
        """rd.committed as (entries already durable in our log, the rest). Committed entries
        are never overwritten, so those below both the durable end of the log and the first
        entry rd rewrites may be applied before rd is persisted (as etcd applies only
        committed entries that are stable). A snapshot to install goes first: none early."""
        committed = rd.committed
        if not committed or rd.snapshot is not None:
            return (), committed
        limit = self._storage.last_index()
        if rd.entries:
            limit = min(limit, rd.entries[0].index - 1)
        k = max(0, min(len(committed), limit - committed[0].index + 1))
        return committed[:k], committed[k:]

    def _needs_persist(self, rd: Ready) -> bool:
        """Must rd wait for a durable write (entries, a new term or vote, a snapshot)?"""
        if rd.entries or (rd.snapshot is not None and self._hooks is not None):
            return True
        hard, durable = rd.hard_state, self._durable
        return hard is not None and (hard.term != durable.term or hard.vote != durable.vote)

    async def _persist(self, rd: Ready) -> bool:
        """Make rd's entries and term/vote durable (one fdatasync). True if the loop yielded."""
        if rd.hard_state is not None:
            self._hard = rd.hard_state
        if rd.snapshot is not None and self._hooks is not None:
            # It replaces the log: durable before the hard state and entries that follow it.
            await asyncio.to_thread(self._storage.save_snapshot, rd.snapshot)
        hard, durable = self._hard, self._durable
        if not rd.entries and hard.term == durable.term and hard.vote == durable.vote:
            return False  # at most the commit index changed: persisted lazily
        started = perf_counter()
        hard_arg = hard if hard != durable else None
        inline = self._persist_inline()
        if inline:
            self._storage.save(hard_arg, rd.entries)
        else:
            await asyncio.to_thread(self._storage.save, hard_arg, rd.entries)
        self._metrics.fsync.observe(perf_counter() - started)
        self._durable = hard
        return not inline

    def _persist_inline(self) -> bool:
        """Block the loop for the fdatasync, or hand it to a worker thread?

        A thread lets the loop keep parsing requests and receiving messages during the sync,
        but the hop costs ~0.1 ms of latency and CPU (the GIL handoff): below a few hundred
        writes in flight the next batch forms in the socket buffers just as well while the
        loop syncs. A follower has nothing to overlap.
        """
        return not self.is_leader or len(self._writes) <= INLINE_SYNC_MAX_WRITES

    def _apply(self, entries: tuple[Entry, ...]) -> None:
        started = perf_counter()
        kv, writes = self._kv, self._writes
        revision = kv.revision
        for entry in entries:
            result: Result | ConfEntry | None = None
            if entry.kind is EntryKind.NORMAL:
                result = kv.apply(entry.index, entry.data)
            else:
                kv.apply_noop(entry.index)
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
        self._metrics.apply.observe(perf_counter() - started)
        if kv.revision != revision:
            for ev in self._watchers:
                ev.set()

    def _on_read_states(self, rd: Ready) -> None:
        for rs in rd.read_states:
            fut = self._reads.pop(rs.ctx, None)
            if fut is None or fut.done():
                continue
            if rs.index is None:
                fut.set_exception(
                    NoQuorum("leadership was lost before a quorum confirmed the read; retry")
                )
            else:
                heapq.heappush(self._reads_ready, (rs.index, rs.ctx, fut))

    def _serve_reads(self) -> None:
        ready, applied = self._reads_ready, self._kv.applied_index
        while ready and ready[0][0] <= applied:
            index, _, fut = heapq.heappop(ready)
            if not fut.done():
                fut.set_result(index)

    def _on_soft_state(self, ss: SoftState) -> None:
        if ss.role is not self._role or ss.leader != self._leader:
            log.info(
                "%s: %s in term %d, leader %s",
                self.id,
                ss.role.value,
                self._raft.term,
                ss.leader or "unknown",
            )
        if ss.leader != self._leader:
            self._metrics.leader_changes.inc()
        self._role, self._leader = ss.role, ss.leader
        if self._hooks is not None:
            self._hooks.on_soft_state(ss, self._raft.term)
        if ss.leader is not None and ss.leader != self.id and self._transfers:
            for _, fut in self._transfers:
                if not fut.done():
                    fut.set_result(ss.leader)
            self._transfers.clear()

    def _fail_pending(self, exc: RaftkvError) -> None:
        futures: list[asyncio.Future[Any]] = [f for _, f in self._writes.values()]
        futures += self._reads.values()
        futures += [f for _, _, f in self._reads_ready]
        futures += [f for _, f in self._transfers]
        futures += [f for _, f in self._inbox.proposals]
        futures += [f for _, f in self._inbox.transfers]
        futures += [f for _, f in self._inbox.conf_changes]
        futures += [self._reads[ctx] for ctx, _, _ in self._inbox.reads if ctx in self._reads]
        for fut in futures:
            if not fut.done():
                fut.set_exception(exc)
        self._writes.clear()
        self._reads.clear()
        self._reads_ready.clear()
        self._transfers.clear()
        self._inbox.proposals.clear()
        self._inbox.transfers.clear()
        self._inbox.conf_changes.clear()
        self._inbox.reads.clear()

    # --- the event stream ---------------------------------------------------------------

    def state_fields(self) -> dict[str, Any]:
        raft = self._raft
        rlog = raft.log
        last, commit = rlog.last_index(), rlog.committed
        first = max(rlog.first_index(), last - LOG_TAIL + 1)
        entries = [
            self._describer.entry_json(rlog.entry(i), commit) for i in range(first, last + 1)
        ]
        return {
            "role": raft.role.value,
            "term": raft.term,
            "leader": raft.leader,
            "commit_index": commit,
            "applied_index": self._kv.applied_index,
            "last_index": last,
            "log": entries,
        }

    def _publish_state(self) -> None:
        raft = self._raft
        key = (
            raft.role,
            raft.term,
            raft.leader,
            raft.log.committed,
            self._kv.applied_index,
            raft.log.last_index(),
            raft.log.last_term(),
        )
        if key != self._last_state:
            self._last_state = key
            self._hub.publish("state", self.state_fields())

    def _publish_trace(self, events: tuple[TraceEvent, ...]) -> None:
        hub = self._hub
        if not hub.active:
            return
        for ev in events:
            hub.publish(
                "trace",
                {"event": ev.kind.value, "term": ev.term, "index": ev.index, "detail": ev.detail},
            )
