"""A tiny synchronous driver for transcript-style core tests: no clock, no randomness beyond a
seeded Random, messages delivered in send order unless a link is cut."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping

from raftkv.core.config import Config
from raftkv.core.messages import Message
from raftkv.core.raft import RaftNode
from raftkv.core.ready import Ready
from raftkv.core.types import Entry, NodeId, ReadState, Role
from raftkv.sim.disk import SimDisk

CONFIG = Config(election_ticks=10, heartbeat_ticks=1)


class Harness:
    def __init__(
        self,
        ids: Iterable[NodeId] = ("a", "b", "c"),
        config: Config = CONFIG,
        node_class: type[RaftNode] = RaftNode,
        configs: Mapping[NodeId, Config] | None = None,
    ) -> None:
        """configs: nodes that run with their own Config instead of config."""
        self.ids = tuple(ids)
        self.config = config
        self.configs = dict(configs or {})
        self.node_class = node_class
        self.disks = {i: SimDisk() for i in self.ids}
        self.nodes: dict[NodeId, RaftNode] = {}
        self.applied: dict[NodeId, list[Entry]] = {i: [] for i in self.ids}
        self.reads: dict[NodeId, list[ReadState]] = {i: [] for i in self.ids}
        self.readies: dict[NodeId, list[Ready]] = {i: [] for i in self.ids}
        self.sent: list[Message] = []
        self.cut: set[tuple[NodeId, NodeId]] = set()
        self.down: set[NodeId] = set()
        self.drop_if: Callable[[Message], bool] = lambda m: False
        for i in self.ids:
            self.restart(i)

    def add_node(self, node: NodeId) -> RaftNode:
        """A new, empty process that knows the current voters and that it is a learner."""
        self.ids = (*self.ids, node)
        self.disks[node] = SimDisk()
        self.applied[node], self.reads[node], self.readies[node] = [], [], []
        voters = next(iter(self.nodes.values())).voters
        self.nodes[node] = self.node_class(
            node, voters, self.config, random.Random(node), learners=(node,)
        )
        return self.nodes[node]

    def restart(self, node: NodeId) -> RaftNode:
        disk = self.disks[node]
        self.nodes[node] = self.node_class(
            node,
            self.ids,
            self.configs.get(node, self.config),
            random.Random(f"{node}-{len(self.sent)}"),
            hard_state=disk.hard_state,
            entries=disk.entries,
            snapshot=disk.snapshot,
        )
        self.applied[node] = []
        self.down.discard(node)
        return self.nodes[node]

    def isolate(self, node: NodeId) -> None:
        for other in self.ids:
            if other != node:
                self.cut |= {(node, other), (other, node)}

    def heal(self) -> None:
        self.cut.clear()

    def process(self, node: NodeId) -> list[Message]:
        """Run one node's Readys (each write durable at once) and return what it sends."""
        raft = self.nodes[node]
        out: list[Message] = []
        while raft.has_ready():
            rd = raft.ready()
            self.readies[node].append(rd)
            out += rd.messages
            if rd.persist is not None:
                out += persist_now(self.disks[node], raft, rd)
            self.applied[node] += rd.committed
            self.reads[node] += rd.read_states
        return out

    def drain(self, max_rounds: int = 1000) -> None:
        """Deliver messages until the cluster is quiet."""
        for _ in range(max_rounds):
            pending = [m for n in self.ids if n not in self.down for m in self.process(n)]
            if not pending:
                return
            self.sent += pending
            for msg in pending:
                lost = (msg.src, msg.dst) in self.cut or self.drop_if(msg)
                if not lost and msg.dst not in self.down:
                    self.nodes[msg.dst].step(msg)
        raise AssertionError("cluster did not quiesce")

    def tick(self, node: NodeId, times: int = 1) -> None:
        for _ in range(times):
            self.nodes[node].tick()
            self.drain()

    def tick_all(self, times: int = 1) -> None:
        for _ in range(times):
            for n in self.ids:
                if n not in self.down:
                    self.nodes[n].tick()
            self.drain()

    def wait_out_start_hold(self) -> None:
        """Let one election timeout pass on every node, electing no one: after a restart a
        node helps elect no one before that (RaftNode._hold_after_start)."""
        before = self.leaders()
        self.tick_all(max(c.election_ticks for c in (self.config, *self.configs.values())))
        assert self.leaders() == before, "a randomized election timeout was the minimum: reseed"

    def elect(self, node: NodeId) -> RaftNode:
        self.nodes[node].campaign()
        self.drain()
        assert self.nodes[node].role is Role.LEADER, f"{node} failed to become leader"
        return self.nodes[node]

    def leaders(self) -> list[NodeId]:
        return [n for n in self.ids if n not in self.down and self.nodes[n].role is Role.LEADER]

    def sent_of(self, kind: type[Message]) -> list[Message]:
        return [m for m in self.sent if isinstance(m, kind)]


def persist_now(disk: SimDisk, raft: RaftNode, rd: Ready) -> list[Message]:
    """Make rd's write durable at once, acknowledge it, and return what waited on it."""
    persist = rd.persist
    assert persist is not None
    disk.persist(persist.hard_state, persist.entries, persist.snapshot)
    if persist.ack is not None:
        raft.persisted(persist.ack)
    return list(persist.after_sync)
