"""Run one simulated seed end to end and judge it: safety after every event, liveness once the
faults heal, and linearizability of the clients' history."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field

from raftkv.check.history import OpOutcome
from raftkv.check.linearizability import CheckResult, Verdict, check
from raftkv.check.models import KvRegisterModel
from raftkv.core.config import Config
from raftkv.core.raft import RaftNode
from raftkv.core.types import Role
from raftkv.driver.driver import NodeDriver
from raftkv.sim.cluster import DriverFactory, NodeFactory, Simulation
from raftkv.sim.faults import ALL_FAULTS, FaultKind, schedule
from raftkv.sim.storage import StorageOpener
from raftkv.storage import LogStorage

SIM_RAFT_CONFIG = Config(election_ticks=10, heartbeat_ticks=2, max_inflight=16)
CHECK_STEPS = 2_000_000  # linearizability search budget


@dataclass(frozen=True, slots=True)
class SimSettings:
    nodes: int = 5
    faults: frozenset[FaultKind] = ALL_FAULTS
    clients: int = 4
    fault_ms: float = 3000.0  # faults are injected during [0, fault_ms)
    recover_ms: float = 1500.0  # then everything heals; clients keep going this long
    settle_ms: float = 2000.0  # and then, with clients stopped, replicas must converge
    raft: Config = SIM_RAFT_CONFIG
    # Draw replication batch and window sizes per seed (tiny batches expose more interleavings).
    vary_config: bool = True
    lease_reads: bool = True
    check_steps: int = CHECK_STEPS
    # Check at every send that promises (votes, acks) are durable. Off only to show that the
    # end-to-end checks also catch what a broken promise leads to.
    check_promises: bool = True
    # Snapshot and compact the log every N applied entries (0: never). With vary_config, each
    # seed draws its own N, so snapshot install to lagging followers is exercised too.
    compact_every: int = 0


@dataclass(slots=True)
class SeedResult:
    seed: int
    violations: list[str] = field(default_factory=list)
    linearizable: str = ""
    ops: int = 0
    ok: int = 0
    failed: int = 0
    unknown: int = 0
    elections: int = 0
    commits: int = 0
    events: int = 0
    trace: list[str] | None = None

    @property
    def passed(self) -> bool:
        return not self.violations


def run_seed(
    seed: int,
    settings: SimSettings = SimSettings(),
    *,
    node_factory: NodeFactory = RaftNode,
    driver_factory: DriverFactory = NodeDriver,
    open_storage: StorageOpener = LogStorage.open,
    trace: bool = False,
) -> SeedResult:
    faults = schedule(random.Random(f"faults-{seed}"), settings.faults, settings.fault_ms)
    config = settings.raft
    compact_every = settings.compact_every
    if settings.vary_config:
        rng = random.Random(f"config-{seed}")
        config = dataclasses.replace(
            config,
            max_batch_entries=rng.choice((1, 2, 8, 64)),
            max_inflight=rng.choice((1, 4, 16)),
            pre_vote=rng.random() < 0.75,
            check_quorum=rng.random() < 0.75,
            election_jitter_ticks=rng.choice((3, 0, 0)),
        )
        compact_every = compact_every or rng.choice((0, 0, 10, 40, 150))
    sim = Simulation(
        seed,
        nodes=settings.nodes,
        raft_config=config,
        faults=faults,
        clients=settings.clients,
        node_factory=node_factory,
        driver_factory=driver_factory,
        open_storage=open_storage,
        lease_reads=settings.lease_reads and config.check_quorum,
        check_promises=settings.check_promises,
        compact_every=compact_every,
    )
    if trace:
        sim.trace = []
    healed_at = settings.fault_ms
    clients_stop = healed_at + settings.recover_ms
    sim.start_clients(until=clients_stop)
    sim.run_until(healed_at)
    sim.heal_all()
    sim.run_until(clients_stop)
    # Let every outstanding operation reach its deadline, then give replicas time to converge.
    sim.run_until(clients_stop + settings.settle_ms)

    result = SeedResult(seed, trace=sim.trace)
    result.violations.extend(sim.checker.violations[:20])
    result.violations.extend(_liveness(sim, healed_at))
    wl = sim.workload
    history = wl.history
    verdict = check_history(sim, settings.check_steps)
    result.linearizable = verdict.verdict.value
    if verdict.verdict is Verdict.ILLEGAL:
        result.violations.append(f"history not linearizable: {verdict.explanation}")
    result.ops = len(history)
    result.ok = wl.outcomes[OpOutcome.OK]
    result.failed = wl.outcomes[OpOutcome.FAIL]
    result.unknown = wl.outcomes[OpOutcome.UNKNOWN]
    result.elections = sim.elections
    result.commits = max((n.raft.log.committed for n in sim.nodes.values() if n.raft), default=0)
    result.events = sim.events
    return result


def check_history(sim: Simulation, max_steps: int = CHECK_STEPS) -> CheckResult:
    """Is the clients' history linearizable (a key-value register per key)?"""
    return check(sim.workload.history, KvRegisterModel(), max_steps=max_steps)


def _liveness(sim: Simulation, healed_at: float) -> list[str]:
    """After the faults heal: one leader, new writes committed, replicas converged."""
    problems: list[str] = []
    live = {n.id: n.raft for n in sim.nodes.values() if n.raft is not None}
    leaders = [nid for nid, r in live.items() if r.role is Role.LEADER]
    if len(leaders) != 1:
        problems.append(f"liveness: {len(leaders)} leaders after healing ({leaders})")
        return problems
    lead = live[leaders[0]]
    members = set(lead.membership.members)
    live = {nid: r for nid, r in live.items() if nid in members}  # removed nodes may lag
    wrote = any(
        op.call >= healed_at and op.ret != float("inf") and op.input.op != "get"  # type: ignore[attr-defined]
        for op in sim.workload.history
    )
    if not wrote:
        problems.append("liveness: no write committed after the faults healed")
    target = (lead.log.last_index(), lead.log.last_term())
    for nid, raft in live.items():
        state = (raft.log.last_index(), raft.log.last_term())
        if state != target or raft.log.committed != target[0] or raft.log.applied != target[0]:
            problems.append(
                f"liveness: {nid} did not converge (last {state}, commit {raft.log.committed}, "
                f"applied {raft.log.applied}; leader {leaders[0]} at {target})"
            )
    return problems
