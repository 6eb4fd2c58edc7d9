"""RaftRuntime: the asyncio host of one NodeDriver (raftkv.driver), for the KV server and the
embedded library alike.

The driver does all the work and decides every order (see driver/driver.py); this host only
gives it real ports and time: the event loop's clock in ticks (TickClock), the peer transport,
the log storage (its sync runs inline on the loop: measured faster here than a worker thread,
whose GIL hand-back costs more than the loop would gain), snapshot writing on a worker thread,
asyncio futures for waiters, and a task that runs the driver whenever something arrives.

Nothing else in the process calls into the core except read-only accessors (status, log,
role), which are safe between awaits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterator, Sequence
from time import monotonic, perf_counter
from typing import Any, Generic, ParamSpec, Protocol

from typing_extensions import TypeVar as DefaultTypeVar

from raftkv.core.membership import ConfChange, ConfEntry
from raftkv.core.messages import Message
from raftkv.core.raft import RaftNode
from raftkv.core.types import Entry, NodeId, Role, Snapshot, SoftState, TraceEvent, TraceKind
from raftkv.core.view import RaftView
from raftkv.driver import MachinePort, NodeDriver, SnapshotPolicy, Waiter
from raftkv.errors import DiskError, NodeStopped
from raftkv.kv.results import Result
from raftkv.runtime.clock import TickClock
from raftkv.runtime.events import EntryDescriber, EventHub
from raftkv.runtime.metrics import NodeMetrics
from raftkv.storage import LogStorage

log = logging.getLogger("raftkv.node")

LOG_TAIL = 20  # entries shown in "state" events
NO_ROOM_LOG_INTERVAL_S = 10.0  # at most one warning this often about a full disk

__all__ = ["Inbox", "NodeHooks", "NodeStopped", "RaftRuntime", "ticker"]


class NodeHooks(Protocol):
    """What a shell adds around the driver (the KV server's address book, the embedded
    library's event bus). Called on the loop; must not block or call into the driver."""

    def on_soft_state(self, soft: SoftState, term: int) -> None:
        """The role or the known leader changed."""

    def on_snapshot_installed(self, snapshot: Snapshot) -> None:
        """The state machine was replaced by the leader's snapshot."""

    def after_cycle(self, raft: RaftView) -> None:
        """After each run of the driver."""


class Inbox:
    """Messages from the transport and the loop's wake-up: what the runtime task waits on."""

    def __init__(self, clock: TickClock | None = None) -> None:
        self.messages: list[Message] = []
        self.ticks = 0  # ticks added by hand; with a clock, elapsed time decides instead
        self.clock = clock
        self._wake = asyncio.Event()

    def add_messages(self, msgs: list[Message]) -> None:
        self.messages.extend(msgs)
        self._wake.set()

    def add_tick(self) -> None:
        self.ticks += 1
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    @property
    def woken(self) -> bool:
        """Was something queued (or a tick due) since the last take_ticks()?"""
        return self._wake.is_set()

    def take_ticks(self) -> int:
        """Ticks since the last call: with a clock, the time elapsed decides (add_tick only
        wakes the loop); without one, the ticks added by hand. Clears woken: the caller takes
        everything queued so far."""
        self._wake.clear()
        ticks, self.ticks = self.ticks, 0
        return self.clock.take() if self.clock is not None else ticks

    async def wait(self) -> None:
        """Until woken (at once if it already was)."""
        await self._wake.wait()


async def ticker(inbox: Inbox, period: float, lag: Callable[[float], None]) -> None:
    """Wake the Ready loop every tick period (how many ticks passed is the TickClock's call)
    and report lag(seconds): how late each wake-up came, the time the loop was busy elsewhere
    (a heartbeat due then left that late too)."""
    loop = asyncio.get_running_loop()
    due = loop.time()
    while True:
        due += period
        now = loop.time()
        if due < now - 5 * period:
            due = now
        await asyncio.sleep(max(0.0, due - now))
        lag(max(0.0, loop.time() - due))
        inbox.add_tick()


M = DefaultTypeVar("M", bound=MachinePort[Any], default=Any)
R = DefaultTypeVar("R", default=Result)
P = ParamSpec("P")
WriteFuture = asyncio.Future[tuple[Any, int]]


class _Scheduler:
    """The driver's Scheduler: syncs inline (timed), snapshots on a worker thread."""

    def __init__(self, metrics: NodeMetrics, wake: Callable[[], None]) -> None:
        self._metrics = metrics
        self._wake = wake

    def sync(self, job: Callable[[], None], done: Callable[[BaseException | None], None]) -> None:
        started = perf_counter()
        try:
            job()
        except BaseException as e:
            done(e)
            return
        self._metrics.fsync.observe(perf_counter() - started)
        done(None)

    def background(
        self, job: Callable[[], None], done: Callable[[BaseException | None], None]
    ) -> None:
        future = asyncio.get_running_loop().run_in_executor(None, job)

        def finished(f: asyncio.Future[None]) -> None:
            done(asyncio.CancelledError() if f.cancelled() else f.exception())
            self._wake()

        future.add_done_callback(finished)


class RaftRuntime(Generic[M, R]):
    """M: the state machine (returning R from apply). The KV server's is RaftRuntime[...]."""

    def __init__(
        self,
        raft: RaftNode,
        machine: M,
        storage: LogStorage,
        *,
        inbox: Inbox,
        send: Callable[[Sequence[Message]], None],
        hub: EventHub,
        metrics: NodeMetrics,
        hooks: NodeHooks | None = None,
        policy: SnapshotPolicy | None = None,
    ) -> None:
        self._inbox = inbox
        self._hub = hub
        self._metrics = metrics
        self._hooks = hooks
        self._send = send
        self.id: NodeId = raft.id
        self._driver: NodeDriver[R] = NodeDriver(
            raft,
            machine,
            storage,
            self,
            _Scheduler(metrics, inbox.wake),
            self,
            policy=policy,
            rng=random.Random(),
            durable=storage.hard_state,
        )
        self._machine = machine
        self._watchers: set[asyncio.Event] = set()
        # Watchers wake when this changes: the store's revision (only data changes move it),
        # or for other machines the applied index.
        self._revision_of: Callable[[], int] = (
            (lambda: machine.revision)
            if hasattr(machine, "revision")
            else (lambda: machine.applied_index)
        )
        self._revision = self._revision_of()
        self._role, self._leader = raft.role, raft.leader
        self._describer = EntryDescriber()
        self._last_state: tuple[Any, ...] = ()
        self._stopping = False
        self._heard_from: NodeId | None = None  # the leader last heard from, and when
        self._heard_at = 0.0
        metrics.bind_state(
            term=lambda: raft.term,
            role=lambda: raft.role,
            commit_index=lambda: raft.commit_index,
            applied_index=lambda: machine.applied_index,
            last_index=lambda: raft.last_index,
            pending_writes=lambda: self._driver.pending_writes,
            pending_reads=lambda: self._driver.pending_reads,
            snapshot_index=lambda: raft.snapshot_index,
            voters=lambda: len(raft.voters),
            learners=lambda: len(raft.learners),
        )
        metrics.bind_storage(storage.stats)
        self._no_room_logged = -NO_ROOM_LOG_INTERVAL_S

    # --- read-only views (safe at any await point) -------------------------------------

    @property
    def kv(self) -> M:
        return self._machine

    @property
    def raft(self) -> RaftView:
        """The core, read-only (the driver alone calls into it)."""
        return self._driver.raft

    @property
    def role(self) -> Role:
        return self.raft.role

    @property
    def is_leader(self) -> bool:
        return self._driver.raft.role is Role.LEADER

    @property
    def leader(self) -> NodeId | None:
        return self.raft.leader

    @property
    def term(self) -> int:
        return self.raft.term

    @property
    def commit_index(self) -> int:
        return self.raft.commit_index

    @property
    def applied_index(self) -> int:
        return int(self._machine.applied_index)

    @property
    def last_index(self) -> int:
        return self.raft.last_index

    @property
    def failed(self) -> BaseException | None:
        return self._driver.failed

    @property
    def running(self) -> bool:
        return not self._stopping and self._driver.failed is None

    def best_transfer_target(self, usable: Callable[[NodeId], bool]) -> NodeId | None:
        """The most caught-up follower for which usable(id) holds (leader only)."""
        raft = self.raft
        matches = {p: raft.match_index(p) for p in raft.membership.voters if p != self.id}
        candidates = [p for p, m in matches.items() if m is not None and usable(p)]
        return max(candidates, key=lambda p: (matches[p] or 0, p), default=None)

    # --- requests -----------------------------------------------------------------------

    async def propose(self, data: bytes) -> tuple[R, int]:
        """Replicate one encoded command; (result, index) once applied here. Raises NotLeader
        / ProposalDropped (definitely not applied) or DiskError / NodeStopped."""
        fut: WriteFuture = asyncio.get_running_loop().create_future()
        self.submit(data, fut)
        return await fut

    def submit(self, data: bytes, waiter: Waiter[tuple[Any, int]]) -> None:
        """propose() without a coroutine: waiter gets what propose() returns or raises, from
        inside the driver's step (an HTTP answer is written without a future: http_types.py).
        A waiter that is done() by then (it stopped waiting) is skipped."""
        self._submit(self._driver.propose, data, waiter)

    async def read_barrier(self, *, lease: bool, for_peer: NodeId | None = None) -> int:
        """ReadIndex: return once this leader confirmed its leadership (a quorum round, or
        its lease) and applied everything committed before the call. Returns that index."""
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.submit_read(fut, lease=lease, for_peer=for_peer)
        return await fut

    def submit_read(
        self, waiter: Waiter[int], *, lease: bool, for_peer: NodeId | None = None
    ) -> None:
        """read_barrier() without a coroutine: waiter gets its index or error (as submit)."""
        self._submit(self._driver.read, waiter, lease=lease, for_peer=for_peer)

    async def transfer(self, target: NodeId) -> NodeId:
        """Hand leadership to target; returns the new leader once this node has seen it."""
        fut: asyncio.Future[NodeId] = asyncio.get_running_loop().create_future()
        self._submit(self._driver.transfer, target, fut)
        return await fut

    async def change_membership(self, change: ConfChange) -> tuple[ConfEntry, int]:
        """Propose one single-server membership change (leader only); (the committed
        configuration entry, its index) once applied here. Raises like propose()."""
        fut: asyncio.Future[tuple[ConfEntry, int]] = asyncio.get_running_loop().create_future()
        self._submit(self._driver.change_membership, change, fut)
        return await fut

    def _submit(self, enqueue: Callable[P, None], *args: P.args, **kwargs: P.kwargs) -> None:
        """enqueue(*args, **kwargs) into the driver and wake the loop (arguments, not a
        closure: one is made per request otherwise)."""
        if self._stopping and self._driver.failed is None:
            raise NodeStopped(f"node {self.id} is shutting down")
        enqueue(*args, **kwargs)  # a stopped driver fails the waiter at once
        self._inbox.wake()

    async def snapshot(self) -> Snapshot:
        """The state machine as of now (at its applied index), encoded off the loop."""
        raft, index = self.raft, self._machine.applied_index
        term = raft.term_at(index)
        if term is None:
            raise AssertionError(f"applied index {index} is not in the log")
        members = raft.membership_at(index)
        data = await asyncio.to_thread(self._machine.snapshot_view().encode)
        return Snapshot(index, term, data, members.voters, members.learners)

    def notify_watchers(self) -> None:
        """Wake every watcher (the store changed outside apply: a snapshot was installed)."""
        for ev in self._watchers:
            ev.set()

    @contextlib.contextmanager
    def watcher(self) -> Iterator[asyncio.Event]:
        """An event set whenever applying changed the store's revision (or on shutdown)."""
        ev = asyncio.Event()
        self._watchers.add(ev)
        try:
            yield ev
        finally:
            self._watchers.discard(ev)

    # --- the loop -----------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to end after the cycle in flight (if any)."""
        self._stopping = True
        self._inbox.wake()

    async def run(self) -> None:
        driver, inbox = self._driver, self._inbox
        try:
            while not self._stopping:
                # Take everything queued so far: ticks and messages here, requests (queued
                # in the driver by submit) in run().
                driver.tick(inbox.take_ticks())
                if inbox.messages:
                    msgs, inbox.messages = inbox.messages, []
                    self._heard(msgs)
                    driver.deliver(msgs)
                if not driver.idle:
                    driver.run()
                    if driver.failed is not None:
                        self._report_failure(driver.failed)
                        break
                    if self._hooks is not None:
                        self._hooks.after_cycle(driver.raft)
                    if self._hub.active:
                        self._publish_state()
                # Either way the transport and HTTP run before the next cycle: a wake-up
                # during this one (from a callback of it) waits one turn of the loop.
                if inbox.woken:
                    await asyncio.sleep(0)
                else:
                    await inbox.wait()
        finally:
            self._stopping = True
            driver.close()
            self.notify_watchers()

    def _heard(self, msgs: Sequence[Message]) -> None:
        """Time the gaps between the cycles that hand the core a message from its leader (a
        follower's view of the heartbeats, whoever delayed them: the leader, the network or
        this loop). Without a known leader (campaigning after a silence), the last leader's
        next message still closes the gap."""
        leader = self.raft.leader or self._heard_from
        if leader is None or leader == self.id:
            self._heard_from = None
            return
        for msg in msgs:
            if msg.src == leader:
                now = monotonic()
                if self._heard_from == leader:
                    self._metrics.leader_silence.observe(now - self._heard_at)
                self._heard_from, self._heard_at = leader, now
                return

    def _report_failure(self, failure: BaseException) -> None:
        if isinstance(failure, DiskError):
            log.critical(
                "%s: DISK FAILURE, node stops acknowledging and shuts down: %s", self.id, failure
            )
        else:
            log.critical("%s: node loop crashed, node shuts down", self.id, exc_info=failure)

    # --- the driver's ports: Transport and Observer -------------------------------------

    def send(self, messages: Sequence[Message]) -> None:
        self._send(messages)

    def soft_state(self, soft: SoftState, term: int) -> None:
        if soft.role is not self._role or soft.leader != self._leader:
            log.info(
                "%s: %s in term %d, leader %s",
                self.id,
                soft.role.value,
                term,
                soft.leader or "unknown",
            )
        if soft.leader != self._leader:
            self._metrics.leader_changes.inc()
        self._role, self._leader = soft.role, soft.leader
        if self._hooks is not None:
            self._hooks.on_soft_state(soft, term)

    def trace(self, events: Sequence[TraceEvent]) -> None:
        for ev in events:  # recovery from lost synced data: always in the log
            if ev.kind is TraceKind.RECOVERED:
                log.warning(
                    "%s: recovered the log entries it had lost (from index %d on): it votes again",
                    self._hub.node_id,
                    ev.index,
                )
            elif ev.kind is TraceKind.PEER_RECOVERING:
                log.warning(
                    "%s: %s lost synced log entries (from index %d on): sending them again, "
                    "and not counting it for them until it has them",
                    self._hub.node_id,
                    ev.detail,
                    ev.index,
                )
        hub = self._hub
        if not hub.active:
            return
        for ev in events:
            hub.publish(
                "trace",
                {"event": ev.kind.value, "term": ev.term, "index": ev.index, "detail": ev.detail},
            )

    def proposed(self, accepted: int, refused: int) -> None:
        if accepted:
            self._metrics.proposals.inc(accepted)
            self._metrics.proposal_batch.observe(accepted)
        if refused:
            self._metrics.proposals_failed.inc(refused)

    def applied(self, entries: Sequence[Entry]) -> None:
        revision = self._revision_of()
        if revision != self._revision:
            self._revision = revision
            self.notify_watchers()

    def snapshot_installed(self, snapshot: Snapshot) -> None:
        self._metrics.snapshots_installed.inc()
        log.info(
            "%s: installed the leader's snapshot at index %d (%d bytes)",
            self.id,
            snapshot.index,
            len(snapshot.data),
        )
        self._revision = self._revision_of()
        if self._hooks is not None:
            self._hooks.on_snapshot_installed(snapshot)
        self.notify_watchers()

    def snapshot_taken(self, snapshot: Snapshot) -> None:
        self._metrics.snapshots_taken.inc()
        log.info(
            "%s: snapshot at index %d (%d bytes), log compacted",
            self.id,
            snapshot.index,
            len(snapshot.data),
        )

    def snapshot_failed(self, index: int, error: BaseException) -> None:
        self._metrics.snapshots_failed.inc()
        log.warning(
            "%s: snapshot at index %d not written, the node keeps its log and serves on (the "
            "snapshot is tried again after a backoff): %s",
            self.id,
            index,
            error,
        )

    def no_room(self, error: BaseException, dropped: Message | None) -> None:
        now = monotonic()
        if now - self._no_room_logged < NO_ROOM_LOG_INTERVAL_S:
            return
        self._no_room_logged = now
        if dropped is None:
            log.warning("%s: refusing writes until space is freed: %s", self.id, error)
        else:
            log.warning(
                "%s: dropping %s from %s unacknowledged until space is freed: %s",
                self.id,
                type(dropped).__name__,
                dropped.src,
                error,
            )

    # --- the event stream ---------------------------------------------------------------

    def state_fields(self) -> dict[str, Any]:
        raft = self.raft
        last, commit = raft.last_index, raft.commit_index
        first = max(raft.first_index, last - LOG_TAIL + 1)
        entries = [
            self._describer.entry_json(raft.entry(i), commit) for i in range(first, last + 1)
        ]
        return {
            "role": raft.role.value,
            "term": raft.term,
            "leader": raft.leader,
            "commit_index": commit,
            "applied_index": self.applied_index,
            "last_index": last,
            "log": entries,
        }

    def _publish_state(self) -> None:
        raft = self.raft
        key = (
            raft.role,
            raft.term,
            raft.leader,
            raft.commit_index,
            self.applied_index,
            raft.last_index,
            raft.last_term,
        )
        if key != self._last_state:
            self._last_state = key
            self._hub.publish("state", self.state_fields())
