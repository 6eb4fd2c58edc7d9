"""One chaos campaign: start a cluster, run clients and the nemesis, heal, verify, report.

    result = asyncio.run(run_campaign(ChaosConfig(nodes=3, duration=20, faults=...)))

Order after the faults: every fault is healed (nodes restarted / continued, network healed),
the clients stop, a leader must appear within leader_bound_s, every key is read linearizably
(those reads join the history), the replicas must converge, the cluster is shut down, and
only then is the history checked (the search gets the CPU to itself).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from raftkv.chaos.checks import (
    Convergence,
    LinearizabilityResult,
    LostWrite,
    check_convergence,
    check_linearizable,
    final_reads,
    find_lost_writes,
)
from raftkv.chaos.cluster import ChaosCluster, NodeTiming
from raftkv.chaos.history import FINAL_CLIENT, OpRecord
from raftkv.chaos.host import NodeExit
from raftkv.chaos.hostfaults import CLOCK_FAULTS, DISK_FAULTS
from raftkv.chaos.nemesis import FaultEvent, Nemesis, NemesisConfig
from raftkv.chaos.workload import ChaosWorkload, WorkloadConfig, monotonic_clock
from raftkv.check import OpOutcome

FINAL_READ_TIMEOUT_S = 10.0
# With disk-full among the faults, nodes snapshot this often, so that a full disk is met within
# a fault's few seconds (writes inside a preallocated WAL segment need no new space).
DISK_FULL_SNAPSHOT_ENTRIES = 300


@dataclass(frozen=True, slots=True)
class ChaosConfig:
    out: Path
    nodes: int = 3
    duration: float = 30.0
    faults: tuple[str, ...] = ()
    seed: int = 0
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    fault_s: tuple[float, float] = (2.0, 4.0)
    quiet_s: tuple[float, float] = (1.0, 2.0)
    timing: NodeTiming = field(default_factory=NodeTiming)
    check_steps: int = 5_000_000
    leader_bound_s: float = 10.0
    converge_bound_s: float = 15.0
    keep_data: bool = False
    fsync: bool = True  # False: nodes never fsync (tests only: proves a power cut loses data)
    disk: bool = False  # data dirs on faultfs even without disk faults (implied by them)
    snapshot_entries: int | None = None  # --snapshot-entries for the nodes (None: see above)

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise ValueError(f"nodes must be >= 1, got {self.nodes}")
        if not self.duration > 0:
            raise ValueError(f"duration must be > 0, got {self.duration}")


@dataclass(slots=True)
class ChaosResult:
    config: ChaosConfig
    cluster_id: str = ""
    duration: float = 0.0  # how long the clients ran
    records: list[OpRecord] = field(default_factory=list)
    events: list[FaultEvent] = field(default_factory=list)
    leader_after_heal_s: float | None = None
    finals: dict[str, str | None] = field(default_factory=dict)
    acked_checked: int = 0
    lost: list[LostWrite] = field(default_factory=list)
    convergence: Convergence = field(default_factory=Convergence)
    linearizability: LinearizabilityResult | None = None
    crashed: list[str] = field(default_factory=list)
    exits: list[NodeExit] = field(default_factory=list)
    disks: dict[str, dict[str, int]] = field(default_factory=dict)  # faultfs counters
    problems: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.problems


async def run_campaign(config: ChaosConfig) -> ChaosResult:
    """Run one campaign and judge it; result.problems lists every failed check."""
    started = time.monotonic()
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    result = ChaosResult(config)
    data_root = Path(tempfile.mkdtemp(prefix="raftkv-chaos-"))
    snapshot_entries = config.snapshot_entries
    if snapshot_entries is None and "disk-full" in config.faults:
        snapshot_entries = DISK_FULL_SNAPSHOT_ENTRIES
    cluster = ChaosCluster(
        config.nodes,
        root=data_root,
        log_dir=out / "logs",
        timing=config.timing,
        keep_data=config.keep_data,
        fsync=config.fsync,
        proxy="partition-oneway" in config.faults,
        disk=config.disk or bool(DISK_FAULTS.intersection(config.faults)),
        clock=bool(CLOCK_FAULTS.intersection(config.faults)),
        snapshot_entries=snapshot_entries,
    )
    result.cluster_id = cluster.cluster_id
    async with cluster:
        await cluster.start()
        await _exercise(cluster, config, result)
        result.exits = cluster.exits()
        result.crashed = cluster.crashed()
        result.disks = await _disk_counters(cluster)
    result.linearizability = check_linearizable(result.records, config.check_steps)
    result.acked_checked, result.lost = find_lost_writes(result.records, result.finals)
    result.problems = _problems(result)
    result.wall_s = time.monotonic() - started
    return result


async def _exercise(cluster: ChaosCluster, config: ChaosConfig, result: ChaosResult) -> None:
    t0 = time.monotonic()
    clock = monotonic_clock(t0)
    workload = ChaosWorkload(cluster.endpoints, config.workload, config.seed, clock)
    nemesis = Nemesis(
        cluster,
        NemesisConfig(
            config.faults,
            fault_s=config.fault_s,
            quiet_s=config.quiet_s,
            leader_bound_s=config.leader_bound_s,
        ),
        config.seed,
        clock,
    )
    stop = asyncio.Event()
    clients = asyncio.create_task(workload.run(stop), name="chaos-workload")
    try:
        # The faults stop a quiet spell before the end: the run ends on a healthy cluster.
        await nemesis.run(until=config.duration - config.quiet_s[0])
        await asyncio.sleep(max(0.0, config.duration - clock()))
    finally:
        stop.set()
        await clients
        result.records, result.events = workload.records, nemesis.events
        result.duration = clock()
    # Everything healed (nemesis invariant); make sure, then time the election.
    for node_id in cluster.dead():
        cluster.spawn(node_id)
    for node_id in cluster.ids:
        cluster.resume(node_id)
    await cluster.heal_network()
    healed = time.monotonic()
    leader = await cluster.wait_for_leader(config.leader_bound_s)
    if leader is None:
        result.records = workload.records
        result.convergence.problems.append("not checked: no leader after healing")
        return  # nothing can be read: the verdict fails on the missing leader and reads
    result.leader_after_heal_s = time.monotonic() - healed
    reads = await final_reads(cluster, workload, FINAL_READ_TIMEOUT_S)
    result.finals.update(reads.values)
    result.records = workload.records
    result.convergence = await check_convergence(
        cluster, workload.keys.used, result.finals, reads.applied, config.converge_bound_s
    )


async def _disk_counters(cluster: ChaosCluster) -> dict[str, dict[str, int]]:
    keys = ("power_cuts", "torn", "fsync_failures", "enospc", "fsyncs", "writes")
    out: dict[str, dict[str, int]] = {}
    for node_id, node in cluster.nodes.items():
        if node.fs is not None:
            status = await node.fs.command_async({"cmd": "status"})
            out[node_id] = {k: int(status[k]) for k in keys}
    return out


def _problems(r: ChaosResult) -> list[str]:
    problems: list[str] = []
    cfg = r.config
    lin = r.linearizability
    if lin is None or lin.verdict == "not-linearizable":
        problems.append(f"history NOT linearizable: {lin.explanation if lin else 'not checked'}")
    elif lin.verdict != "linearizable":
        problems.append(f"linearizability undecided (raise --check-steps): {lin.explanation}")
    if r.lost:
        shown = "; ".join(
            f"{w.key}={w.value!r} (acked at {w.acked_at:.2f}s, final {w.final!r})"
            for w in r.lost[:5]
        )
        problems.append(f"{len(r.lost)} acknowledged write(s) lost: {shown}")
    missing = [k for k in _keys(r) if k not in r.finals]
    if missing:
        problems.append(f"{len(missing)} key(s) could not be read after healing: {missing[:5]}")
    if r.leader_after_heal_s is None:
        problems.append(f"no leader within {cfg.leader_bound_s:g}s after the final heal")
    problems.extend(
        f"no leader within {cfg.leader_bound_s:g}s after healing {ev.name} at {ev.end:.1f}s"
        for ev in r.events
        if ev.end is not None and ev.leader_after_s is None
    )
    problems.extend(r.convergence.problems)
    problems.extend(f"node crashed: {c}" for c in r.crashed)
    if not any(rec.outcome is OpOutcome.OK for rec in r.records if rec.client != FINAL_CLIENT):
        problems.append("no operation succeeded during the run")
    return problems


def _keys(r: ChaosResult) -> list[str]:
    return sorted({rec.key for rec in r.records})
