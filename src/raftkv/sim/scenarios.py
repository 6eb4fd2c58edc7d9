"""Scripted fault scenarios: exact schedules for histories that random search rarely reaches.

They run through the same Simulation (same Ready discipline, same invariant checks after every
event), only the faults are placed by hand. Each returns the violations the checker found.
"""

from __future__ import annotations

from collections.abc import Callable

from raftkv.core.config import Config
from raftkv.core.raft import RaftNode
from raftkv.core.types import Role
from raftkv.kv.commands import Put, encode_command
from raftkv.sim.cluster import NodeFactory, Simulation

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
