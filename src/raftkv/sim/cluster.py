"""The deterministic simulator: a cluster of pure Raft nodes on a virtual clock.

Everything is driven from one event queue ordered by (time, sequence number), and every random
choice comes from random.Random instances seeded from the run's seed, so a seed replays
exactly. Each node follows the same Ready discipline as the real runtime: while one Ready is
being persisted (a simulated fsync) the node only queues its inputs; a crash in that window
loses the Ready's writes, though messages allowed out before the persist may already be gone.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from raftkv.core.config import Config
from raftkv.core.membership import ConfChange, ConfChangeKind
from raftkv.core.messages import Message
from raftkv.core.raft import RaftNode
from raftkv.core.ready import Ready
from raftkv.core.types import EntryKind, EventKind, HardState, NodeId, Role, Snapshot
from raftkv.errors import CallerError
from raftkv.kv.commands import Cas, Put, encode_command
from raftkv.kv.store import KvStore
from raftkv.sim.disk import SimDisk
from raftkv.sim.faults import Fault, FaultKind, PartitionShape
from raftkv.sim.invariants import SafetyChecker
from raftkv.sim.network import Network
from raftkv.sim.workload import ClientOp, OpKind, Workload

NodeFactory = Callable[..., RaftNode]


@dataclass(frozen=True, slots=True)
class _Tick:
    pass


_TICK = _Tick()
Input = Message | _Tick | ClientOp


@dataclass(slots=True)
class SimNode:
    id: NodeId
    disk: SimDisk = field(default_factory=SimDisk)
    raft: RaftNode | None = None
    kv: KvStore | None = None
    incarnation: int = 0
    clock_rate: float = 1.0  # this node's tick period is tick_ms * clock_rate (clock drift)
    paused_until: float = 0.0  # a paused node queues its input and does nothing else
    inflight: Ready | None = None
    inbox: deque[Input] = field(default_factory=deque)
    writes: dict[int, tuple[int, ClientOp]] = field(default_factory=dict)  # index -> (term, op)
    reads: dict[int, ClientOp] = field(default_factory=dict)  # read ctx (op id) -> op
    reads_at: list[tuple[int, ClientOp]] = field(default_factory=list)  # (read index, op)


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
        lease_reads: bool = True,
        clock_drift: float = 0.05,
        check_promises: bool = True,
        compact_every: int = 0,
    ) -> None:
        self.seed = seed
        self.now = 0.0
        self._rng = random.Random(f"sim-{seed}")
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self.ids = tuple(f"n{i + 1}" for i in range(nodes))
        self.nodes = {
            nid: SimNode(nid, clock_rate=self._rng.uniform(1 - clock_drift, 1 + clock_drift))
            for nid in self.ids
        }
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
        self._clients_until = 0.0
        self._dirty: dict[NodeId, None] = {}  # nodes whose state may have changed (ordered)
        self._crash_points: list[Fault] = []  # active CRASH_POINT windows
        self._leader_hint: dict[int, NodeId] = {}  # client -> the node it believes leads
        self.events = 0
        self.elections = 0
        self.trace: list[str] | None = None
        for nid in self.ids:
            self._start(self.nodes[nid])
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

    # --- node lifecycle ------------------------------------------------------------------

    def _start(self, node: SimNode) -> None:
        node.incarnation += 1
        hs = node.disk.hard_state
        snap = node.disk.snapshot
        node.raft = self._factory(
            node.id,
            self.ids,
            self.config,
            random.Random(f"node-{self.seed}-{node.id}-{node.incarnation}"),
            hard_state=hs,
            entries=node.disk.entries,
            snapshot=snap,
        )
        node.kv = KvStore.restore(snap.data) if snap is not None else KvStore()
        if snap is not None:
            self.checker.on_snapshot(node.id, snap.index)
        incarnation = node.incarnation
        first = self.now + self._rng.uniform(0, self.tick_ms)
        self.at(first, lambda: self._tick(node, incarnation))
        self.log(f"{node.id} started (term {hs.term}, {len(node.disk.entries)} entries on disk)")

    def crash(self, node: SimNode) -> None:
        if node.raft is None:
            return
        self.log(f"{node.id} CRASH (unsynced Ready lost: {node.inflight is not None})")
        node.raft = None
        node.kv = None
        node.inflight = None
        node.inbox.clear()
        node.writes.clear()
        node.reads.clear()
        node.reads_at.clear()
        self.checker.forget(node.id)

    def restart(self, node: SimNode) -> None:
        if node.raft is None:
            self._start(node)

    def _tick(self, node: SimNode, incarnation: int) -> None:
        if node.incarnation != incarnation or node.raft is None:
            return
        self._feed(node, _TICK)
        period = self.tick_ms * node.clock_rate
        self.at(self.now + period, lambda: self._tick(node, incarnation))

    # --- one node's input and Ready processing -------------------------------------------

    def _feed(self, node: SimNode, item: Input) -> None:
        if node.raft is None:
            return
        node.inbox.append(item)
        self._run(node)

    def _run(self, node: SimNode) -> None:
        if self.now < node.paused_until:
            return
        self._dirty[node.id] = None
        while node.raft is not None and node.inflight is None:
            while node.inbox and node.raft is not None:
                self._handle(node, node.raft, node.inbox.popleft())
            raft = node.raft
            if raft is None or not raft.has_ready():
                return
            rd = raft.ready()
            node.inflight = rd
            self._send_all(node, rd.messages)
            if rd.must_persist():
                delay = self._rng.uniform(*self.fsync_ms)
                if self._rng.random() < 0.03:
                    delay += self._rng.uniform(5.0, 40.0)  # an occasional disk stall
                self.at(
                    self.now + delay,
                    lambda inc=node.incarnation: self._persisted(node, inc),  # type: ignore[misc]
                )
                return
            self._finish(node, raft, rd)

    def _persisted(self, node: SimNode, incarnation: int) -> None:
        if node.incarnation != incarnation or node.raft is None or node.inflight is None:
            return
        if self.now < node.paused_until:
            self.at(node.paused_until, lambda: self._persisted(node, incarnation))
            return
        rd = node.inflight
        durable_before = node.disk.hard_state
        self._dirty[node.id] = None
        self._finish(node, node.raft, rd)
        if self._crash_points and self._rng.random() < self._crash_rate(rd, durable_before):
            # Crash right after a persist and its messages: the moment votes and acks leave.
            self.crash(node)
            self.at(self.now + self._rng.uniform(0.2, 10.0), lambda: self.restart(node))
            return
        self._run(node)

    def _finish(self, node: SimNode, raft: RaftNode, rd: Ready) -> None:
        """Persist, send, apply, advance: the fixed Ready order."""
        if rd.must_persist():
            node.disk.persist(rd.hard_state, rd.entries, rd.snapshot)
        self._send_all(node, rd.messages_after_persist)
        if rd.snapshot is not None:
            node.kv = KvStore.restore(rd.snapshot.data)
            self.checker.on_snapshot(node.id, rd.snapshot.index)
        kv = node.kv
        assert kv is not None
        for entry in rd.committed:
            self.checker.on_apply(node.id, entry)
            if entry.kind is EntryKind.NORMAL:
                result = kv.apply(entry.index, entry.data)
                output: object = None
                waiter = node.writes.pop(entry.index, None)
                if waiter is not None:
                    term, op = waiter
                    if term != entry.term:
                        op.maybe_applied = False  # another entry won this index: definitely lost
                        self._retry(op, None)
                    else:
                        if op.kind is OpKind.CAS:
                            output = result.ok
                        self.workload.complete(op, output, self.now)
                        self._next_op(op.client)
            else:
                kv.apply_noop(entry.index)
                waiter = node.writes.pop(entry.index, None)
                if waiter is not None:
                    waiter[1].maybe_applied = False
                    self._retry(waiter[1], None)
        for rs in rd.read_states:
            read_op = node.reads.pop(rs.ctx, None)
            if read_op is None:
                continue
            op = read_op
            if rs.index is None:
                self._retry(op, None)
            else:
                node.reads_at.append((rs.index, op))
        for ev in rd.events:
            if ev.kind is EventKind.BECAME_LEADER:
                self.elections += 1
            self.log(f"{node.id} t{ev.term} {ev.kind.value} {ev.index or ''} {ev.detail}")
        raft.advance(rd)
        node.inflight = None
        self._serve_reads(node)
        self._maybe_compact(node, raft, kv)

    def _maybe_compact(self, node: SimNode, raft: RaftNode, kv: KvStore) -> None:
        """Snapshot the state machine and drop the log behind it every compact_every entries."""
        if (
            not self.compact_every
            or raft.log.applied - raft.log.snapshot_index < self.compact_every
        ):
            return
        index = raft.log.applied
        term = raft.log.term(index)
        assert term is not None and kv.applied_index == index
        members = raft.membership_at(index)
        snap = Snapshot(index, term, kv.snapshot(), members.voters, members.learners)
        node.disk.install(snap)  # tmp + fsync + rename: durable before the log drops it
        raft.compact(snap)

    def _serve_reads(self, node: SimNode) -> None:
        kv = node.kv
        if kv is None or not node.reads_at:
            return
        waiting = []
        for index, op in node.reads_at:
            if kv.applied_index >= index:
                kv_value = kv.get(op.key)
                value = kv_value.value.decode() if kv_value is not None else None
                self.workload.complete(op, value, self.now)
                self._next_op(op.client)
            else:
                waiting.append((index, op))
        node.reads_at = waiting

    def _send_all(self, node: SimNode, msgs: tuple[Message, ...]) -> None:
        for msg in msgs:
            if node.raft is not None:
                self.checker.on_send(node.id, node.raft, node.disk, msg)
            for delay in self.network.delays(msg.src, msg.dst):
                dst = self.nodes[msg.dst]
                self.at(self.now + delay, lambda m=msg, d=dst: self._deliver(d, m))  # type: ignore[misc]

    def _deliver(self, node: SimNode, msg: Message) -> None:
        """A partition also drops what was already in flight on the cut link."""
        if (msg.src, msg.dst) not in self.network.blocked:
            self._feed(node, msg)

    def _handle(self, node: SimNode, raft: RaftNode, item: Input) -> None:
        match item:
            case _Tick():
                raft.tick()
            case ClientOp():
                self._request(node, raft, item)
            case _:
                raft.step(item)

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

    def _when_idle(self, nid: NodeId) -> RaftNode:
        node = self.nodes[nid]
        if not self.run_until_true(lambda: node.inflight is None, self.now + 100.0):
            raise AssertionError(f"{nid} stayed busy")
        if node.raft is None:
            raise AssertionError(f"{nid} is down")
        return node.raft

    def campaign(self, nid: NodeId, *, force: bool = False) -> None:
        """Start an election on nid; force makes it a transfer-style election that voters do
        not ignore for leader stickiness (as after TimeoutNow)."""
        self._when_idle(nid).campaign(transfer=force)
        self._run(self.nodes[nid])

    def propose(self, nid: NodeId, data: bytes) -> None:
        self._when_idle(nid).propose(data)
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
            self.at(self.now + self._rng.uniform(0, 20), lambda c=client: self._next_op(c, 0.0))  # type: ignore[misc]

    def _next_op(self, client: int, think: float | None = None) -> None:
        delay = self._rng.uniform(0, 5) if think is None else think
        if self.now + delay >= self._clients_until:
            return
        self.at(self.now + delay, lambda: self._begin(client))

    def _begin(self, client: int) -> None:
        op = self.workload.new_op(client, self.now)
        self.at(op.deadline, lambda: self._deadline(op))
        # Half the time a client asks whichever node it likes; the rest, the leader it knows.
        hint = self._leader_hint.get(client)
        target = hint if hint and self._rng.random() < 0.5 else self._rng.choice(self.ids)
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
        if node.raft is None:
            self._retry(op, None)  # connection refused: definitely not received
            return
        self._feed(node, op)

    def _retry(self, op: ClientOp, hint: NodeId | None) -> None:
        if op.done:
            return
        target = hint or self._rng.choice(self.ids)
        self._leader_hint[op.client] = target
        self.at(self.now + self._rng.uniform(2, 10), lambda: self._send_request(op, target))

    def _request(self, node: SimNode, raft: RaftNode, op: ClientOp) -> None:
        if op.done:
            return
        try:
            if op.kind is OpKind.GET:
                raft.read_index(op.op_id, lease=op.lease)
                node.reads[op.op_id] = op
                return
            if op.kind is OpKind.PUT:
                assert op.value is not None
                data = encode_command(Put(op.key, op.value.encode()))
            else:
                assert op.value is not None
                expected = op.expected.encode() if op.expected is not None else None
                data = encode_command(Cas(op.key, expected, op.value.encode()))
            term, index = raft.propose(data)
        except CallerError as e:
            self._retry(op, getattr(e, "leader", None))
            return
        op.maybe_applied = True
        node.writes[index] = (term, op)

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
        return self.nodes[self._rng.choice(self.ids)]

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
            case FaultKind.FLAP:
                self.at(fault.start, lambda: self._flap(fault, self._pick(False).id, True))
            case _:
                self.at(fault.start, lambda: self._network_fault(fault))
                self.at(fault.end, self._heal_network)

    def _crash_fault(self, fault: Fault) -> None:
        node = self._pick(fault.target_leader)
        self.crash(node)
        self.at(fault.end, lambda: self.restart(node))

    def _crash_rate(self, rd: Ready, before: HardState) -> float:
        """Crash points favour the moments after a new term or vote became durable, and
        after a leader wrote entries it has not replicated yet."""
        rate = self._crash_points[-1].rate
        hs = rd.hard_state
        if hs is not None and (hs.term, hs.vote) != (before.term, before.vote):
            return min(1.0, rate * 5)
        if rd.entries and rd.soft_state is None and rd.messages:
            return min(1.0, rate * 3)
        return rate

    def _change_membership(self, fault: Fault) -> None:
        """One single-server step towards churn: re-add a removed node as a learner, promote a
        caught-up learner, or remove a voter (sometimes the leader) while more than 3 remain."""
        lead = self.leader()
        if lead is None or lead.raft is None or lead.inflight is not None:
            return
        if self.now < lead.paused_until:
            return  # a frozen process takes no requests
        raft = lead.raft
        outsiders = [n for n in self.ids if n not in raft.membership.members]
        ready = [n for n in raft.learners if raft.progress[n].match >= raft.log.committed]
        if outsiders:
            change = ConfChange(ConfChangeKind.ADD_LEARNER, self._rng.choice(outsiders))
        elif ready:
            change = ConfChange(ConfChangeKind.PROMOTE, self._rng.choice(ready))
        elif len(raft.voters) > 3:
            victim = lead.id if fault.target_leader else self._rng.choice(raft.voters)
            change = ConfChange(ConfChangeKind.REMOVE, victim)
        else:
            return
        try:
            raft.propose_conf_change(change)
        except CallerError as e:
            self.log(f"membership {change.kind.value} {change.node} refused: {e}")
            return
        self.log(f"membership {change.kind.value} {change.node} proposed on {lead.id}")
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
        self._rng.shuffle(ids)
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
                inbound = self._rng.random() < 0.5
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
