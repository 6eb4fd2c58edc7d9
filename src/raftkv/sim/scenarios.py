"""Scripted fault scenarios: exact schedules for histories that random search rarely reaches.

They run through the same Simulation (same Ready discipline, same invariant checks after every
event), only the faults are placed by hand. Each returns the violations the checker found.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterable
from typing import Any

from raftkv.check.linearizability import Verdict
from raftkv.core.config import Config
from raftkv.core.raft import RaftNode
from raftkv.core.types import NodeId, Role
from raftkv.kv.commands import Put, encode_command
from raftkv.sim.cluster import NodeFactory, Simulation
from raftkv.sim.runner import SIM_RAFT_CONFIG, check_history
from raftkv.sim.storage import corrupt_synced_record
from raftkv.sim.workload import ClientOp, OpKind

# Timers so long they never fire on their own: every election here is started by the script.
_SCRIPTED = Config(
    election_ticks=10_000,
    heartbeat_ticks=2,
    max_batch_entries=1,
    max_inflight=1,
    pre_vote=False,
    check_quorum=False,  # so voters do not wait out a silent leader's lease
)


def _put(key: str, value: str) -> bytes:
    return encode_command(Put(key, value.encode()))


def figure8(node_factory: NodeFactory = RaftNode) -> list[str]:
    """The Raft paper's Figure 8: an entry from an earlier term, replicated to a majority by a
    later leader, is not committed until an entry of that leader's term is; a leader that
    commits it by counting replicas loses it when a node with a newer conflicting entry wins.
    """
    sim = Simulation(
        0, nodes=3, raft_config=_SCRIPTED, faults=[], clients=0, node_factory=node_factory
    )
    n1, n2, n3 = sim.ids

    def wait(condition: Callable[[], bool], step: str, ms: float = 500.0) -> None:
        if not sim.run_until_true(condition, sim.now + ms) and not sim.checker.violations:
            raise AssertionError(f"figure 8 script stalled: {step}")

    def elect(nid: str) -> None:
        """Campaign until elected (a first try may lose to a vote cast in the same term)."""
        for _ in range(3):
            sim.campaign(nid, force=True)  # the script decides when elections happen
            if sim.run_until_true(lambda: leads(nid), sim.now + 100.0):
                return
        raise AssertionError(f"figure 8 script stalled: {nid} not elected")

    def raft(nid: str) -> RaftNode:
        node = sim.nodes[nid].raft
        assert node is not None, f"{nid} is down"
        return node

    def leads(nid: str) -> bool:
        return sim.nodes[nid].raft is not None and raft(nid).role is Role.LEADER

    # Term 1: n1 leads and commits a put everywhere.
    elect(n1)
    sim.propose(n1, _put("x", "1"))
    wait(lambda: all(raft(n).log.committed == 2 for n in sim.ids), "first put committed")

    # n1 is cut off and appends index 3 (term 1) that nobody else gets.
    sim.network.isolate(n1)
    sim.propose(n1, _put("x", "old"))
    wait(lambda: sim.nodes[n1].disk.has(3, 1), "n1 wrote index 3 in term 1")

    # Term 2: n2 wins with n3's vote, writes its no-op at index 3 (term 2), and is cut off
    # before that no-op reaches anyone.
    sim.network.heal()
    sim.network.isolate(n1)
    elect(n2)
    sim.network.isolate(n2)
    wait(lambda: sim.nodes[n2].disk.has(3, 2), "n2 wrote its no-op")
    sim.crash(sim.nodes[n2])

    # Term 3: n1 returns and wins with n3's vote; it replicates its term-1 entry at index 3 to
    # n3, one entry per message. Stop n1 the moment n3 holds index 3, before the term-3 no-op.
    sim.network.heal()
    sim.network.isolate(n2)
    wait(lambda: not leads(n1), "n1 learned of term 2 and stepped down")
    elect(n1)
    wait(lambda: sim.nodes[n3].disk.has(3, 1), "n3 received index 3 of term 1")
    sim.network.cut(n1, n3)
    sim.run_until_true(lambda: False, sim.now + 5.0)
    sim.crash(sim.nodes[n1])

    # Term 4: n2 comes back with index 3 from term 2, newer than n3's, and wins with n3's vote.
    # If index 3 (term 1) was reported committed, this is where it is lost.
    sim.network.heal()
    sim.network.isolate(n1)
    sim.restart(sim.nodes[n2])
    elect(n2)
    sim.restart(sim.nodes[n1])
    sim.network.heal()
    sim.run_until_true(lambda: False, sim.now + 200.0)
    return list(sim.checker.violations)


# --- lease reads ----------------------------------------------------------------------------

# Lease scenarios run with check-quorum and pre-vote (lease reads need them) and timers that
# fire. The simulator's clocks drift up to 5% each; with 40 election ticks a 4-tick drift margin
# tolerates 5.4% (lease_drift_ticks / (2 * (election_ticks - 1) - lease_drift_ticks)). The lease
# lasts 40 - 1 - 4 = 35 ticks (about 350 ms): room for the script's steps.
_LEASE = Config(election_ticks=40, heartbeat_ticks=2, lease_drift_ticks=4)


class _Script:
    """Scripted steps on a Simulation: elections, client operations, waits, the verdict."""

    def __init__(self, sim: Simulation, name: str) -> None:
        self.sim = sim
        self.name = name
        self._client = 0

    def leads(self, nid: NodeId) -> bool:
        raft = self.sim.nodes[nid].raft
        return raft is not None and raft.role is Role.LEADER

    def leader_other_than(self, nid: NodeId) -> NodeId | None:
        newest = self.sim.leader()
        return newest.id if newest is not None and newest.id != nid else None

    def wait(self, condition: Callable[[], bool], step: str, ms: float) -> None:
        sim = self.sim
        if not sim.run_until_true(condition, sim.now + ms) and not sim.checker.violations:
            raise AssertionError(f"{self.name} script stalled: {step}")

    def elect(self, nid: NodeId) -> None:
        self.sim.campaign(nid)
        self.wait(lambda: self.leads(nid), f"{nid} elected", 100.0)

    def write_everywhere(self, nid: NodeId, value: str) -> None:
        """x = value through the leader nid, and wait until every node has applied it."""
        put = self.call(nid, OpKind.PUT, value)
        nodes = self.sim.nodes.values()
        self.wait(
            lambda: put.done and all(n.kv is not None and n.kv.get(put.key) for n in nodes),
            f"x={value} applied everywhere",
            100.0,
        )

    def call(self, nid: NodeId, kind: OpKind, value: str | None = None) -> ClientOp:
        """A new client sends one operation on one key ("x") to nid; reads are lease reads."""
        self._client += 1
        wl = self.sim.workload
        op = wl.op(self._client, kind, wl.keys[0], value, self.sim.now, lease=True)
        self.sim.request(nid, op)
        return op

    def violations(self) -> list[str]:
        found = list(self.sim.checker.violations)
        verdict = check_history(self.sim)
        if verdict.verdict is Verdict.ILLEGAL:
            found.append(f"history not linearizable: {verdict.explanation}")
        return found


def stale_lease_after_restart(node_factory: NodeFactory = RaftNode, seed: int = 0) -> list[str]:
    """Issue #15, item 2: n3 has long been cut off from the leader n1; n2 acknowledges n1's
    heartbeats until n1 is isolated; n2 restarts and n3's election timer fires at once. If the
    restarted n2 votes at once (it knows no leader), n3 is elected and commits x=2 while n1's
    lease is valid, and n1's lease read returns x=1."""
    sim = Simulation(
        seed, nodes=3, raft_config=_LEASE, faults=[], clients=0, node_factory=node_factory
    )
    script = _Script(sim, "stale lease after restart")
    n1, n2, n3 = sim.ids
    script.elect(n1)
    script.write_everywhere(n1, "1")
    sim.network.cut(n1, n3)
    sim.network.cut(n3, n1)
    sim.run_until(sim.now + 1000.0)  # n3 campaigns now and then; n2 holds its vote for n1
    if not script.leads(n1):
        raise AssertionError("stale lease after restart: n1 lost its leadership")
    sim.network.isolate(n1)
    sim.crash(sim.nodes[n2])
    sim.restart(sim.nodes[n2])
    sim.campaign(n3)
    sim.run_until_true(lambda: script.leads(n3), sim.now + 100.0)
    put2 = script.call(n3, OpKind.PUT, "2")
    sim.run_until_true(lambda: put2.done, sim.now + 100.0)
    sim.run_until(sim.now + 1.0)  # the read starts after the write's answer, not with it
    script.call(n1, OpKind.GET)  # n1's lease lasts 35 ticks (about 350 ms) from its last round
    sim.network.heal()
    sim.run_until(sim.now + 2000.0)
    return script.violations()


def stale_lease_with_mixed_timeouts(
    node_factory: NodeFactory = RaftNode, seed: int = 0
) -> list[str]:
    """n1 and n2 have 60 election ticks, n3 has 5: n3 holds its vote for only 5 ticks after a
    heartbeat. n2 has long been cut off from the leader n1, so n3 alone confirms n1's rounds;
    then n1 is isolated and n3's timer elects it with n2's vote 5 to 10 ticks later. n1's lease
    must end by then (n3's hold), not last n1's own 60 ticks."""
    long = dataclasses.replace(_LEASE, election_ticks=60, lease_drift_ticks=1)
    short = dataclasses.replace(_LEASE, election_ticks=5, lease_drift_ticks=1)
    sim = Simulation(
        seed,
        nodes=3,
        raft_config=long,
        faults=[],
        clients=0,
        node_factory=_with_configs(node_factory, {"n3": short}),
    )
    script = _Script(sim, "stale lease with mixed timeouts")
    n1, n2, _ = sim.ids
    script.elect(n1)
    script.write_everywhere(n1, "1")
    sim.network.cut(n1, n2)
    sim.network.cut(n2, n1)
    sim.run_until(sim.now + 1500.0)  # n2 campaigns now and then; n3 holds its vote for n1
    if not script.leads(n1):
        raise AssertionError("stale lease with mixed timeouts: n1 lost its leadership")
    sim.network.isolate(n1)
    script.wait(lambda: script.leader_other_than(n1) is not None, "a new leader", 300.0)
    new = script.leader_other_than(n1)
    assert new is not None
    put2 = script.call(new, OpKind.PUT, "2")
    script.wait(lambda: put2.done, "x=2 written", 100.0)
    sim.run_until(sim.now + 1.0)
    script.call(n1, OpKind.GET)  # n1's own lease would last 60 - 2 ticks (about 580 ms)
    sim.network.heal()
    sim.run_until(sim.now + 2000.0)
    return script.violations()


def _with_configs(factory: NodeFactory, configs: dict[NodeId, Config]) -> NodeFactory:
    """A node factory that gives the named nodes their own Config."""

    def make(
        node_id: NodeId, voters: Iterable[NodeId], config: Config, rng: random.Random, **kw: Any
    ) -> RaftNode:
        return factory(node_id, voters, configs.get(node_id, config), rng, **kw)

    return make


def election_after_whole_cluster_restart(
    node_factory: NodeFactory = RaftNode, seed: int = 0, *, nodes: int = 5, spread_ms: float = 0.0
) -> float:
    """Milliseconds from restarting every node of a cluster that had a leader (each at a random
    moment within spread_ms) to the next leader: the cost of the vote hold after a restart."""
    sim = Simulation(
        seed,
        nodes=nodes,
        raft_config=SIM_RAFT_CONFIG,
        faults=[],
        clients=0,
        node_factory=node_factory,
    )
    if not sim.run_until_true(lambda: sim.leader() is not None, 5000.0):
        raise AssertionError("no first leader")
    sim.run_until(sim.now + 200.0)
    for node in sim.nodes.values():
        sim.crash(node)
    start = sim.now
    rng = random.Random(f"restart-{seed}")
    for node in sim.nodes.values():
        sim.at(start + rng.uniform(0.0, spread_ms), lambda n=node: sim.restart(n))  # type: ignore[misc]
    if not sim.run_until_true(lambda: sim.leader() is not None, start + 60_000.0):
        raise AssertionError("no leader within 60 s of a whole-cluster restart")
    return sim.now - start


# --- lost synced data (protocol-aware recovery) ---------------------------------------------


def _damage_entry(sim: Simulation, nid: NodeId, index: int) -> None:
    """Power loss on nid, which then loses the synced WAL record holding entry index."""
    node = sim.nodes[nid]
    sim.crash(node)
    what = corrupt_synced_record(node.fs, random.Random(f"damage-{index}"), holding=index)
    if what is None:
        raise AssertionError(f"no synced, attested record holds entry {index} on {nid}")
    node.damaged = True
    sim.checker.on_damage(nid, node.disk, [])
    sim.log(f"{nid} DAMAGED {what}")


def lost_data_vote(node_factory: NodeFactory = RaftNode, seed: int = 0) -> list[str]:
    """x=2 is committed on n1 and n2 (n3 is away) and a client is told so. n2 then loses the
    record holding it, and n1 stops. If n2 voted for n3 (which lacks x=2) after its restart,
    n3 would lead without a committed entry: a recovering node must help elect no one until
    it has caught up. n1 comes back, is elected, and n2 recovers x=2 from it."""
    sim = Simulation(
        seed, nodes=3, raft_config=_SCRIPTED, faults=[], clients=0, node_factory=node_factory
    )
    script = _Script(sim, "lost data vote")
    n1, n2, n3 = sim.ids
    script.elect(n1)
    script.write_everywhere(n1, "1")
    sim.network.isolate(n3)
    put = script.call(n1, OpKind.PUT, "2")
    script.wait(lambda: put.done, "x=2 written on n1 and n2", 100.0)
    index = sim.nodes[n1].disk.entries[-1].index
    script.call(n1, OpKind.PUT, "3")  # a later record on n2 attests that x=2's was synced
    script.wait(
        lambda: sim.nodes[n2].disk.has(index + 1, sim.nodes[n1].disk.hard_state.term),
        "x=3 synced on n2",
        100.0,
    )
    sim.crash(sim.nodes[n1])
    _damage_entry(sim, n2, index)
    sim.restart(sim.nodes[n2])
    sim.network.heal()
    sim.run_until(sim.now + 50.0)
    sim.campaign(n3, force=True)  # a transfer-style election: no leader lease holds n2 back
    sim.run_until(sim.now + 200.0)
    if script.leads(n3):
        return script.violations()  # the bug: elected with n2's vote
    sim.restart(sim.nodes[n1])
    sim.run_until(sim.now + 50.0)
    for _ in range(3):  # a first try may meet n3's vote for itself in the same term
        sim.campaign(n1, force=True)
        if sim.run_until_true(lambda: script.leads(n1), sim.now + 100.0):
            break
    script.wait(lambda: script.leads(n1), "n1 elected (with n3's vote)", 1.0)
    script.wait(
        lambda: (r := sim.nodes[n2].raft) is not None and r.lost_from == 0, "n2 recovered", 300.0
    )
    sim.run_until(sim.now + 200.0)
    return script.violations()


def lost_data_commit(node_factory: NodeFactory = RaftNode, seed: int = 0) -> list[str]:
    """x reaches only n1 (the leader) and n2: not committed yet (5 nodes). n2 loses the
    record holding it, restarts and tells n1. When n4 gets x too, x is on two disks: n1 must
    not count it committed (n2's acknowledgement from before its loss would make three)."""
    sim = Simulation(
        seed, nodes=5, raft_config=_SCRIPTED, faults=[], clients=0, node_factory=node_factory
    )
    script = _Script(sim, "lost data commit")
    n1, n2, _, n4, _ = sim.ids
    script.elect(n1)
    script.write_everywhere(n1, "1")
    for other in sim.ids[2:]:
        sim.network.isolate(other)
    put = script.call(n1, OpKind.PUT, "2")
    term = sim.nodes[n1].disk.hard_state.term
    index = sim.nodes[n1].raft.log.last_index()  # type: ignore[union-attr]
    script.wait(lambda: sim.nodes[n2].disk.has(index, term), "x=2 synced on n2", 100.0)
    script.call(n1, OpKind.PUT, "3")  # a later record on n2 attests that x=2's was synced
    script.wait(lambda: sim.nodes[n2].disk.has(index + 1, term), "x=3 synced on n2", 100.0)
    if put.done:
        raise AssertionError("lost data commit: x=2 committed with two of five nodes")
    _damage_entry(sim, n2, index)
    sim.restart(sim.nodes[n2])
    seen = sim.nodes[n1].reports_seen
    script.wait(lambda: sim.nodes[n1].reports_seen > seen, "n2's report reached n1", 100.0)
    sim.network.cut(n1, n2)  # n2 cannot get x back now
    sim.network.cut(n2, n1)
    sim.network.blocked -= {(n1, n4), (n4, n1)}
    sim.run_until(sim.now + 100.0)  # n4 gets x=2 and x=3: on n1 and n4 only
    sim.network.heal()
    sim.run_until(sim.now + 300.0)
    return script.violations()
