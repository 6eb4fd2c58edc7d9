"""The deterministic simulator: a cluster of Raft nodes on a virtual clock.

Each node is the production NodeDriver (raftkv.driver) over simulated ports: the real
LogStorage (WAL, snapshot files, recovery) on a SimFs that loses unsynced writes on a crash
(a prefix or, on some nodes, any subset of them), fails fsyncs the way Linux does and damages
synced data when told to, a network with partitions, loss, duplication and reordering, a
scheduler that completes syncs and snapshot writes after a random latency, and ticks from a
per-node drifting clock. After a crash the real recovery runs, and must bring back everything
that was synced, or say that it lost it (only where synced data was damaged).
Everything is driven from one event queue ordered by (time, sequence number), and every random
choice comes from random.Random instances seeded from the run's seed, so a seed replays
exactly.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from raftkv.core.config import Config
from raftkv.core.membership import ConfChange, ConfChangeKind
from raftkv.core.messages import AppendEntriesResponse, HeartbeatResponse, Message
from raftkv.core.raft import RaftNode
from raftkv.core.types import (
    Entry,
    NodeId,
    Role,
    Snapshot,
    SoftState,
    TraceEvent,
    TraceKind,
)
from raftkv.driver.compaction import SnapshotPolicy
from raftkv.driver.driver import NodeDriver
from raftkv.errors import CallerError, DiskError, NotLeader, ProposalDropped
from raftkv.kv.commands import Cas, Put, encode_command
from raftkv.kv.results import Result
from raftkv.kv.store import KvStore
from raftkv.sim.disk import SimDisk
from raftkv.sim.faults import Fault, FaultKind, PartitionShape
from raftkv.sim.fs import SimFs
from raftkv.sim.invariants import SafetyChecker
from raftkv.sim.network import Network
from raftkv.sim.storage import (
    SEGMENT_BYTES,
    STORAGE_DIR,
    SimLogStore,
    StorageOpener,
    Unsynced,
    corrupt_synced_record,
    lost_by_recovery,
    recovered_disk,
)
from raftkv.sim.workload import ClientOp, OpKind, Workload
from raftkv.storage import LogStorage

NodeFactory = Callable[..., RaftNode]
DriverFactory = Callable[..., NodeDriver[Result]]


@dataclass(slots=True)
class SimNode:
    id: NodeId
    fs: SimFs = field(default_factory=SimFs)
    disk: SimDisk = field(default_factory=SimDisk)  # what was synced: the checker's view
    store: SimLogStore | None = None
    driver: NodeDriver[Result] | None = None
    incarnation: int = 0
    clock_rate: float = 1.0  # this node's tick period is tick_ms * clock_rate (clock drift)
    paused_until: float = 0.0  # a paused node queues its input and does nothing else
    damaged: bool = False  # synced data was damaged since its last start (CORRUPT fault)
    unsynced: Unsynced = field(default_factory=list)  # writes not synced when it stopped
    reports: set[NodeId] = field(default_factory=set)  # peers whose loss reports it was sent
    reports_seen: int = 0  # loss reports delivered to it (for scripted scenarios)

    @property
    def raft(self) -> RaftNode | None:
        return self.driver.raft if self.driver is not None else None

    @property
    def kv(self) -> KvStore | None:
        machine = self.driver.machine if self.driver is not None else None
        assert machine is None or isinstance(machine, KvStore)
        return machine


class _Ports:
    """One node incarnation's transport, scheduler and observer."""

    def __init__(self, sim: Simulation, node: SimNode) -> None:
        self._sim = sim
        self._node = node
        self._incarnation = node.incarnation

    # Transport
    def send(self, messages: Sequence[Message]) -> None:
        self._sim._send_all(self._node, messages)

    # Scheduler
    def sync(self, job: Callable[[], None], done: Callable[[BaseException | None], None]) -> None:
        self._later(self._sim.sync_delay(), job, done, sync=True)

    def background(
        self, job: Callable[[], None], done: Callable[[BaseException | None], None]
    ) -> None:
        self._later(self._sim.rng.uniform(2.0, 20.0), job, done, sync=False)

    def _later(
        self,
        delay: float,
        job: Callable[[], None],
        done: Callable[[BaseException | None], None],
        *,
        sync: bool,
    ) -> None:
        sim = self._sim
        sim.at(
            sim.now + delay, lambda: sim._complete(self._node, self._incarnation, job, done, sync)
        )

    # Observer
    def soft_state(self, soft: SoftState, term: int) -> None:
        pass

    def trace(self, events: Sequence[TraceEvent]) -> None:
        sim, nid = self._sim, self._node.id
        for ev in events:
            if ev.kind is TraceKind.BECAME_LEADER:
                sim.elections += 1
            sim.log(f"{nid} t{ev.term} {ev.kind.value} {ev.index or ''} {ev.detail}")

    def proposed(self, accepted: int, refused: int) -> None:
        pass

    def applied(self, entries: Sequence[Entry]) -> None:
        for entry in entries:
            self._sim.checker.on_apply(self._node.id, entry)

    def snapshot_installed(self, snapshot: Snapshot) -> None:
        self._sim.checker.on_snapshot(self._node.id, snapshot.index)

    def snapshot_taken(self, snapshot: Snapshot) -> None:
        self._sim.log(f"{self._node.id} snapshot at {snapshot.index}, log compacted")

    def snapshot_failed(self, index: int, error: BaseException) -> None:
        self._sim.log(f"{self._node.id} snapshot at {index} failed: {error}")

    def no_room(self, error: BaseException, dropped: Message | None) -> None:
        self._sim.log(f"{self._node.id} no room: {error}")


class _Write:
    """Waits for a client write (Waiter[(Result, index)])."""

    def __init__(self, sim: Simulation, op: ClientOp) -> None:
        self._sim = sim
        self.op = op

    def done(self) -> bool:
        return self.op.done

    def set_result(self, result: tuple[Result, int]) -> None:
        op = self.op
        output = result[0].ok if op.kind is OpKind.CAS else None
        self._sim.workload.complete(op, output, self._sim.now)
        self._sim._next_op(op.client)

    def set_exception(self, exc: BaseException) -> None:
        if isinstance(exc, NotLeader | ProposalDropped):
            self.op.maybe_applied = False  # refused, or another entry won its index
            self._sim._retry(self.op, getattr(exc, "leader", None))
        # Anything else (the node stopped): the outcome stays open until the deadline.


class _Read:
    """Waits for a client read's index, then reads the store it was confirmed on."""

    def __init__(self, sim: Simulation, op: ClientOp, node: SimNode) -> None:
        self._sim = sim
        self.op = op
        self._node = node

    def done(self) -> bool:
        return self.op.done

    def set_result(self, index: int) -> None:
        kv = self._node.kv
        assert kv is not None and kv.applied_index >= index
        found = kv.get(self.op.key)
        value = found.value.decode() if found is not None else None
        self._sim.workload.complete(self.op, value, self._sim.now)
        self._sim._next_op(self.op.client)

    def set_exception(self, exc: BaseException) -> None:
        if isinstance(exc, CallerError):
            self._sim._retry(self.op, getattr(exc, "leader", None))


class _Ignored:
    """A waiter for requests whose answer nobody needs (scripted proposals, churn)."""

    def __init__(self) -> None:
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, result: Any) -> None:
        self._done = True

    def set_exception(self, exc: BaseException) -> None:
        self._done = True


class Simulation:
    def __init__(
        self,
        seed: int,
        *,
        nodes: int,
        raft_config: Config,
        faults: list[Fault],
        clients: int,
        tick_ms: float = 10.0,
        fsync_ms: tuple[float, float] = (0.2, 2.0),
        node_factory: NodeFactory = RaftNode,
        driver_factory: DriverFactory = NodeDriver,
        open_storage: StorageOpener = LogStorage.open,
        lease_reads: bool = True,
        clock_drift: float = 0.05,
        check_promises: bool = True,
        compact_every: int = 0,
    ) -> None:
        self.seed = seed
        self.now = 0.0
        self.rng = random.Random(f"sim-{seed}")
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self.ids = tuple(f"n{i + 1}" for i in range(nodes))
        disks = random.Random(f"disk-{seed}")
        self.nodes = {
            nid: SimNode(
                nid,
                SimFs(writeback=disks.choice(("prefix", "subset"))),
                clock_rate=self.rng.uniform(1 - clock_drift, 1 + clock_drift),
            )
            for nid in self.ids
        }
        self._open_storage = open_storage
        self.network = Network(random.Random(f"net-{seed}"), self.ids)
        self.workload = Workload(
            random.Random(f"load-{seed}"), clients=clients, lease_reads=lease_reads
        )
        self.checker = SafetyChecker(nodes, check_promises=check_promises)
        self.config = raft_config
        self.tick_ms = tick_ms
        self.compact_every = compact_every  # 0: never compact
        self.fsync_ms = fsync_ms
        self._factory = node_factory
        self._driver_factory = driver_factory
        self._clients_until = 0.0
        self._dirty: dict[NodeId, None] = {}  # nodes whose state may have changed (ordered)
        self._crash_points: list[Fault] = []  # active CRASH_POINT windows
        self._leader_hint: dict[int, NodeId] = {}  # client -> the node it believes leads
        self.events = 0
        self.elections = 0
        self.trace: list[str] | None = None
        for nid in self.ids:
            self._start(self.nodes[nid])
        self._churn = any(f.kind is FaultKind.MEMBERSHIP for f in faults)
        for fault in faults:
            self._schedule_fault(fault)

    # --- the event loop ------------------------------------------------------------------

    def at(self, time: float, action: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (time, self._seq, action))

    def run_until(self, until: float) -> None:
        while self._queue and self._queue[0][0] <= until and not self.checker.violations:
            time, _, action = heapq.heappop(self._queue)
            self.now = time
            action()
            self.events += 1
            self._check()
        self.now = until

    def _check(self) -> None:
        """Check the invariants on every node the last event touched."""
        if self._dirty:
            touched = {
                nid: raft for nid in self._dirty if (raft := self.nodes[nid].raft) is not None
            }
            self._dirty.clear()
            self.checker.check(touched, self._disks())

    def _disks(self) -> dict[NodeId, SimDisk]:
        return {n.id: n.disk for n in self.nodes.values()}

    def log(self, text: str) -> None:
        if self.trace is not None:
            self.trace.append(f"{self.now:9.2f} {text}")

    def sync_delay(self) -> float:
        delay = self.rng.uniform(*self.fsync_ms)
        if self.rng.random() < 0.03:
            delay += self.rng.uniform(5.0, 40.0)  # an occasional disk stall
        return delay

    # --- node lifecycle ------------------------------------------------------------------

    def _start(self, node: SimNode) -> None:
        """Start a node from what its disk holds, through the real recovery."""
        node.incarnation += 1
        failed_syncs = node.fs.failed_syncs
        try:
            storage, rec = self._open_storage(
                STORAGE_DIR,
                fs=node.fs,
                node_id=node.id,
                segment_bytes=SEGMENT_BYTES,
                clock=lambda: self.now / 1000.0,
            )
        except DiskError as e:
            if node.fs.failed_syncs == failed_syncs:
                self.checker.fail(f"{node.id} cannot restart: {e}")
                return
            # The injected fsync error hit recovery: the node refuses to start; try again.
            node.fs.release_locks()
            self.log(f"{node.id} start failed: {e}")
            self.at(self.now + self.rng.uniform(1.0, 20.0), lambda: self.restart(node))
            return
        lost = lost_by_recovery(node.disk, rec, node.unsynced)
        if lost is not None:
            self.checker.fail(f"durability: recovery on {node.id} lost what was synced: {lost}")
        if rec.lost_data is not None and not node.damaged:
            self.checker.fail(f"recovery on {node.id} reports lost synced data: {rec.lost_data}")
        node.damaged = False
        node.unsynced = []
        node.disk = recovered_disk(rec)
        node.store = SimLogStore(storage, node.disk)
        hs, snap = rec.hard_state, rec.snapshot
        raft = self._factory(
            node.id,
            self.ids,
            self.config,
            random.Random(f"node-{self.seed}-{node.id}-{node.incarnation}"),
            hard_state=hs,
            entries=rec.entries,
            snapshot=snap,
        )
        kv = KvStore.restore(snap.data) if snap is not None else KvStore()
        ports = _Ports(self, node)
        node.driver = self._driver_factory(
            raft,
            kv,
            node.store,
            ports,
            ports,
            ports,
            policy=SnapshotPolicy(entries=self.compact_every, bytes=0, log_ratio=0.0),
            rng=random.Random(f"snap-{self.seed}-{node.id}-{node.incarnation}"),
            durable=hs,
        )
        if snap is not None:
            self.checker.on_snapshot(node.id, snap.index)
        incarnation = node.incarnation
        first = self.now + self.rng.uniform(0, self.tick_ms)
        self.at(first, lambda: self._tick(node, incarnation))
        self.log(f"{node.id} started (term {hs.term}, {len(rec.entries)} entries on disk)")

    def crash(self, node: SimNode) -> None:
        """Power loss: the node stops, its disk keeps what was synced and maybe more."""
        if node.driver is None:
            return
        node.fs.crash(self.rng)
        self.log(f"{node.id} CRASH")
        self._process_gone(node)

    def _process_gone(self, node: SimNode) -> None:
        """What a node's process held in memory is gone (its disk is the caller's business)."""
        node.unsynced += node.store.pending if node.store is not None else []
        node.driver = None
        node.store = None
        node.reports = set()
        self.checker.forget(node.id)

    def restart(self, node: SimNode) -> None:
        if node.driver is None:
            self._start(node)

    def _exit(self, node: SimNode) -> None:
        """The process died after a disk error (fail-stop); the host stays up, and the page
        cache with it. It is started again at once, as a supervisor would."""
        if node.driver is None or node.driver.failed is None:
            return
        node.fs.release_locks()
        self.log(f"{node.id} EXIT after a disk error: {node.driver.failed}")
        self._process_gone(node)
        self.at(self.now + self.rng.uniform(1.0, 20.0), lambda: self.restart(node))

    def _tick(self, node: SimNode, incarnation: int) -> None:
        if node.incarnation != incarnation or node.driver is None:
            return
        node.driver.tick()
        self._run(node)
        period = self.tick_ms * node.clock_rate
        self.at(self.now + period, lambda: self._tick(node, incarnation))

    # --- one node's processing -----------------------------------------------------------

    def _run(self, node: SimNode) -> None:
        if self.now < node.paused_until or node.driver is None:
            return
        self._dirty[node.id] = None
        self._guarded(node, node.driver.run)
        self._processed_reports(node)

    def _processed_reports(self, node: SimNode) -> None:
        """The driver ran: it stepped every message delivered so far."""
        if node.reports:
            self.checker.learned(node.id, node.reports)
            node.reports = set()

    def _guarded(self, node: SimNode, action: Callable[[], None]) -> None:
        """Run a node's code; an exception escaping it is a bug in that node: a violation."""
        try:
            action()
        except Exception as e:
            self.checker.fail(f"{node.id} raised {type(e).__name__}: {e}")

    def _complete(
        self,
        node: SimNode,
        incarnation: int,
        job: Callable[[], None],
        done: Callable[[BaseException | None], None],
        sync: bool,
    ) -> None:
        """A sync or background job finishes now (unless the node crashed meanwhile)."""
        if node.incarnation != incarnation or node.driver is None:
            return
        if self.now < node.paused_until:
            self.at(node.paused_until, lambda: self._complete(node, incarnation, job, done, sync))
            return
        self._dirty[node.id] = None
        rate = self._crash_rate(node) if sync else 0.0
        error: DiskError | None = None
        try:
            job()
        except DiskError as e:
            error = e
        self._guarded(node, lambda: done(error))
        self._processed_reports(node)
        if error is not None:
            if node.driver is not None and node.driver.failed is not None:
                self.at(self.now + self.rng.uniform(0.1, 2.0), lambda: self._exit(node))
            return
        if rate and self.rng.random() < rate:
            # Crash right after a sync and its messages: the moment votes and acks leave.
            self.crash(node)
            self.at(self.now + self.rng.uniform(0.2, 10.0), lambda: self.restart(node))

    def _send_all(self, node: SimNode, msgs: Sequence[Message]) -> None:
        for msg in msgs:
            if node.raft is not None:
                self.checker.on_send(node.id, node.raft, node.disk, msg)
            for delay in self.network.delays(msg.src, msg.dst):
                dst = self.nodes[msg.dst]
                self.at(self.now + delay, lambda m=msg, d=dst: self._deliver(d, m))  # type: ignore[misc]

    def _deliver(self, node: SimNode, msg: Message) -> None:
        """A partition also drops what was already in flight on the cut link."""
        if (msg.src, msg.dst) not in self.network.blocked and node.driver is not None:
            if isinstance(msg, AppendEntriesResponse | HeartbeatResponse) and msg.recover_epoch:
                node.reports.add(msg.src)
                node.reports_seen += 1
            node.driver.deliver((msg,))
            self._run(node)

    # --- direct control, for scripted scenarios -----------------------------------------

    def run_until_true(self, condition: Callable[[], bool], limit: float) -> bool:
        """Run events until condition holds (checked after every event) or time passes limit."""
        while self._queue and self._queue[0][0] <= limit and not self.checker.violations:
            if condition():
                return True
            time, _, action = heapq.heappop(self._queue)
            self.now = time
            action()
            self.events += 1
            self._check()
        return condition()

    def _driver(self, nid: NodeId) -> NodeDriver[Result]:
        driver = self.nodes[nid].driver
        if driver is None:
            raise AssertionError(f"{nid} is down")
        return driver

    def campaign(self, nid: NodeId, *, force: bool = False) -> None:
        """Start an election on nid; force makes it a transfer-style election that voters do
        not ignore for leader stickiness (as after TimeoutNow)."""
        self._driver(nid).raft.campaign(transfer=force)
        self._run(self.nodes[nid])

    def propose(self, nid: NodeId, data: bytes) -> None:
        self._driver(nid).propose(data, _Ignored())
        self._run(self.nodes[nid])

    def request(self, nid: NodeId, op: ClientOp) -> None:
        """A client sends op to nid now; it is retried, times out and enters the history like
        any client operation."""
        self.at(op.deadline, lambda: self._deadline(op))
        self._send_request(op, nid)

    # --- clients --------------------------------------------------------------------------

    def start_clients(self, until: float) -> None:
        self._clients_until = until
        for client in range(self.workload.clients):
            self.at(self.now + self.rng.uniform(0, 20), lambda c=client: self._next_op(c, 0.0))  # type: ignore[misc]

    def _next_op(self, client: int, think: float | None = None) -> None:
        delay = self.rng.uniform(0, 5) if think is None else think
        if self.now + delay >= self._clients_until:
            return
        self.at(self.now + delay, lambda: self._begin(client))

    def _begin(self, client: int) -> None:
        op = self.workload.new_op(client, self.now)
        self.at(op.deadline, lambda: self._deadline(op))
        # Half the time a client asks whichever node it likes; the rest, the leader it knows.
        hint = self._leader_hint.get(client)
        target = hint if hint and self.rng.random() < 0.5 else self.rng.choice(self.ids)
        self._send_request(op, target)

    def _deadline(self, op: ClientOp) -> None:
        if not op.done:
            self.workload.give_up(op, self.now)
            self._leader_hint.pop(op.client, None)  # a timed-out client tries another node
            self._next_op(op.client)

    def _send_request(self, op: ClientOp, target: NodeId) -> None:
        if op.done:
            return
        node = self.nodes[target]
        if node.driver is None:
            self._retry(op, None)  # connection refused: definitely not received
            return
        self._request(node, node.driver, op)
        self._run(node)

    def _retry(self, op: ClientOp, hint: NodeId | None) -> None:
        if op.done:
            return
        target = hint or self.rng.choice(self.ids)
        self._leader_hint[op.client] = target
        self.at(self.now + self.rng.uniform(2, 10), lambda: self._send_request(op, target))

    def _request(self, node: SimNode, driver: NodeDriver[Result], op: ClientOp) -> None:
        if op.kind is OpKind.GET:
            driver.read(_Read(self, op, node), lease=op.lease)
            return
        assert op.value is not None
        if op.kind is OpKind.PUT:
            data = encode_command(Put(op.key, op.value.encode()))
        else:
            expected = op.expected.encode() if op.expected is not None else None
            data = encode_command(Cas(op.key, expected, op.value.encode()))
        op.maybe_applied = True  # from here on it may be appended, until refused
        driver.propose(data, _Write(self, op))

    # --- faults ---------------------------------------------------------------------------

    def leader(self) -> SimNode | None:
        leaders = [
            n for n in self.nodes.values() if n.raft is not None and n.raft.role is Role.LEADER
        ]
        return max(leaders, key=lambda n: n.raft.term if n.raft else 0, default=None)

    def _pick(self, prefer_leader: bool) -> SimNode:
        lead = self.leader()
        if prefer_leader and lead is not None:
            return lead
        return self.nodes[self.rng.choice(self.ids)]

    def _schedule_fault(self, fault: Fault) -> None:
        match fault.kind:
            case FaultKind.CRASH:
                self.at(fault.start, lambda: self._crash_fault(fault))
            case FaultKind.PAUSE:
                self.at(fault.start, lambda: self._pause(fault))
            case FaultKind.MEMBERSHIP:
                self.at(fault.start, lambda: self._change_membership(fault))
            case FaultKind.CRASH_POINT:
                self.at(fault.start, lambda: self._crash_points.append(fault))
                self.at(fault.end, lambda: self._crash_points.remove(fault))
            case FaultKind.FSYNC_ERROR:
                self.at(fault.start, lambda: self._fsync_error(fault))
            case FaultKind.CORRUPT:
                self.at(fault.start, lambda: self._corrupt(fault))
            case FaultKind.FLAP:
                self.at(fault.start, lambda: self._flap(fault, self._pick(False).id, True))
            case _:
                self.at(fault.start, lambda: self._network_fault(fault))
                self.at(fault.end, self._heal_network)

    def _crash_fault(self, fault: Fault) -> None:
        node = self._pick(fault.target_leader)
        self.crash(node)
        self.at(fault.end, lambda: self.restart(node))

    def _fsync_error(self, fault: Fault) -> None:
        """The node's next fsync fails (it stops, and restarts with its page cache); at the
        fault's end it loses power, which shows whether what it read back was durable."""
        node = self._pick(fault.target_leader)
        node.fs.fail_syncs = 1
        self.log(f"{node.id} next fsync fails (EIO)")

        def power_cut() -> None:
            node.fs.fail_syncs = 0
            if node.driver is not None:
                self.crash(node)
                self.at(self.now + self.rng.uniform(0.2, 10.0), lambda: self.restart(node))

        self.at(fault.end, power_cut)

    def _corrupt(self, fault: Fault) -> None:
        """Power loss on up to a minority of the voters, each then losing a byte of data it
        had synced (see corrupt_synced_record). Never more than a minority is recovering at
        once: beyond that no protocol can keep what was acknowledged. With membership churn
        the voters may shrink to 3, and learners may be promoted: one at a time then."""
        voters = 3 if self._churn else len(self.ids)
        recovering = {
            n.id
            for n in self.nodes.values()
            if n.damaged or n.disk.hard_state.lost_from or (n.raft is not None and n.raft.lost_from)
        }
        room = (voters - 1) // 2 - len(recovering)
        candidates = [nid for nid in self.ids if nid not in recovering]
        if room <= 0 or not candidates:
            return
        self.rng.shuffle(candidates)
        lead = self.leader()
        if fault.target_leader and lead is not None and lead.id in candidates:
            candidates.remove(lead.id)
            candidates.insert(0, lead.id)
        for nid in candidates[: self.rng.randint(1, room)]:
            node = self.nodes[nid]
            leading = self._leading()  # before the crash: whose view of it may go stale
            if node.driver is not None:
                self.crash(node)
            else:
                node.fs.crash(self.rng)  # the host loses power too
            what = corrupt_synced_record(node.fs, self.rng)
            if what is None:
                self.log(f"{nid} has no synced record to damage")
            else:
                node.damaged = True
                self.checker.on_damage(nid, node.disk, leading)
                self.log(f"{nid} DAMAGED {what}")
            self.at(fault.end, lambda n=node: self.restart(n))  # type: ignore[misc]

    def _leading(self) -> list[tuple[NodeId, int]]:
        """(id, term) of every node that leads now."""
        return [
            (n.id, n.raft.term)
            for n in self.nodes.values()
            if n.raft is not None and n.raft.role is Role.LEADER
        ]

    def _crash_rate(self, node: SimNode) -> float:
        """During a crash-point window, how likely a crash is right after this sync: most
        likely when it makes a new term or vote durable, then when a leader's entries."""
        if not self._crash_points:
            return 0.0
        rate = self._crash_points[-1].rate
        durable, store = node.disk.hard_state, node.store
        if store is None:
            return 0.0
        for hard, _ in store.pending:
            if hard is not None and (hard.term, hard.vote) != (durable.term, durable.vote):
                return min(1.0, rate * 5)
        raft = node.raft
        if raft is not None and raft.role is Role.LEADER and any(e for _, e in store.pending):
            return min(1.0, rate * 3)
        return rate

    def _change_membership(self, fault: Fault) -> None:
        """One single-server step towards churn: re-add a removed node as a learner, promote a
        caught-up learner, or remove a voter (sometimes the leader) while more than 3 remain."""
        lead = self.leader()
        if lead is None or lead.driver is None:
            return
        if self.now < lead.paused_until:
            return  # a frozen process takes no requests
        raft = lead.driver.raft
        outsiders = [n for n in self.ids if n not in raft.membership.members]
        ready = [n for n in raft.learners if raft.progress[n].match >= raft.log.committed]
        if outsiders:
            change = ConfChange(ConfChangeKind.ADD_LEARNER, self.rng.choice(outsiders))
        elif ready:
            change = ConfChange(ConfChangeKind.PROMOTE, self.rng.choice(ready))
        elif len(raft.voters) > 3:
            victim = lead.id if fault.target_leader else self.rng.choice(raft.voters)
            change = ConfChange(ConfChangeKind.REMOVE, victim)
        else:
            return
        self.log(f"membership {change.kind.value} {change.node} proposed on {lead.id}")
        lead.driver.change_membership(change, _Ignored())
        self._run(lead)

    def _pause(self, fault: Fault) -> None:
        node = self._pick(fault.target_leader)
        node.paused_until = max(node.paused_until, fault.end)
        self.log(f"{node.id} PAUSED until {fault.end:.2f}")
        self.at(fault.end, lambda: self._run(node))

    def _flap(self, fault: Fault, target: NodeId, down: bool) -> None:
        if self.now >= fault.end:
            self._heal_network()
            return
        if down:
            self.network.isolate(target)
        else:
            self.network.blocked.clear()
        self.log(f"flap {target}: {self.network.describe()}")
        self.at(self.now + fault.rate, lambda: self._flap(fault, target, not down))

    def _network_fault(self, fault: Fault) -> None:
        net = self.network
        match fault.kind:
            case FaultKind.LOSS:
                net.loss = fault.rate
            case FaultKind.DUPLICATE:
                net.duplicate = fault.rate
            case FaultKind.DELAY:
                net.max_delay = fault.rate
            case FaultKind.PARTITION:
                self._partition(fault.shape or PartitionShape.ISOLATE_NODE)
        self.log(f"fault {fault.kind.value} {fault.shape.value if fault.shape else fault.rate}")

    def _partition(self, shape: PartitionShape) -> None:
        ids = list(self.ids)
        self.rng.shuffle(ids)
        lead = self.leader()
        match shape:
            case PartitionShape.ISOLATE_LEADER:
                self.network.isolate(lead.id if lead else ids[0])
            case PartitionShape.ISOLATE_NODE:
                self.network.isolate(ids[0])
            case PartitionShape.MAJORITY_MINORITY:
                cut = len(ids) // 2
                self.network.partition(ids[:cut], ids[cut:])
            case PartitionShape.BRIDGE:
                # ids[0] is the bridge: it reaches both halves, which cannot reach each other.
                half = (len(ids) - 1) // 2 + 1
                left, right = ids[1:half], ids[half:]
                self.network.blocked = {
                    (a, b)
                    for a in ids
                    for b in ids
                    if a != b and ((a in left and b in right) or (a in right and b in left))
                }
            case PartitionShape.ASYMMETRIC:
                target = lead.id if lead else ids[0]
                inbound = self.rng.random() < 0.5
                for other in self.ids:
                    if other != target:
                        if inbound:
                            self.network.cut(other, target)
                        else:
                            self.network.cut(target, other)
        self.log(f"partition {shape.value}: {self.network.describe()}")

    def _heal_network(self) -> None:
        self.network.heal()
        self.log("network healed")

    def heal_all(self) -> None:
        self._heal_network()
        self._crash_points.clear()
        for node in self.nodes.values():
            self.restart(node)
