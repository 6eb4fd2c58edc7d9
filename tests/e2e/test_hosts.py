"""Three real hosts: `raftkv serve` in three network namespaces, each with its own address on a
bridge, 50 ms round trips between them, and a partition made by nftables inside the hosts.

The cluster must elect, replicate, keep writing on the majority side of the partition while
the cut-off node refuses writes and linearizable reads, converge after healing without a new
election, and the whole client history (raftkv.chaos's workload and checks) must be
linearizable with no acknowledged write lost. Default timing (50 ms ticks, 10 election ticks);
only the server's request timeout is shorter, so a refused write answers sooner.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from raftkv.chaos.checks import (
    check_convergence,
    check_linearizable,
    final_reads,
    find_lost_writes,
)
from raftkv.chaos.cluster import ChaosCluster, NodeTiming
from raftkv.chaos.history import OpRecord
from raftkv.chaos.workload import ChaosWorkload, WorkloadConfig, monotonic_clock
from raftkv.check import OpOutcome
from raftkv.client import AsyncClient, RetryPolicy

from .lab_cluster import LabCluster
from .netns import HostLab, missing_tools

_missing = missing_tools()
if _missing and not os.environ.get("CI"):  # in CI (root) the test must run
    pytest.skip(f"network namespaces need {', '.join(_missing)}", allow_module_level=True)

DELAY_MS = 25.0  # each way: 50 ms round trips between hosts
HEALTHY_S = 3.0
PARTITION_S = 6.0
HEALED_S = 3.0
# Peer links abort once sent data stays unacknowledged for 2 s (the transport's
# TCP_USER_TIMEOUT at default timing), then redial: a connect times out (SYNs at 0, 1, 3 s)
# or backs off up to 2 s between attempts.
LINK_DOWN_BOUND_S = 4.0
REJOIN_BOUND_S = 5.0
MINORITY_CLIENT = 100  # client id of the requests sent to the cut-off node


@dataclass
class Run:
    records: list[OpRecord] = field(default_factory=list)
    terms: list[tuple[str, dict[str, int]]] = field(default_factory=list)  # (when, node: term)
    first_leader: str = ""
    majority_leader: str = ""
    leader_after_heal: str | None = None
    cut_at: float = 0.0
    elected_at: float = 0.0  # the majority's leader was seen
    healed_at: float = 0.0
    rejoined_s: float | None = None  # from healing until the cut-off node follows the leader
    links_down_s: float | None = None  # from the cut until the majority saw its links down
    finals: dict[str, str | None] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def test_three_hosts_elect_replicate_and_survive_a_partition(tmp_path: Path) -> None:
    started = time.monotonic()
    with HostLab(3, delay_ms=DELAY_MS, log_dir=tmp_path) as lab:
        rtt = lab.rtt_ms("n1", "n2")
        assert 2 * DELAY_MS <= rtt < 4 * DELAY_MS, f"round trip n1 -> n2 is {rtt:.1f} ms"
        run = asyncio.run(_scenario(lab, tmp_path))
        assert not lab.delayer_problem(), lab.delayer_problem()
    print(
        f"hosts test: {time.monotonic() - started:.1f}s, rtt {rtt:.1f} ms, "
        f"{len(run.records)} ops, leader elected {run.elected_at - run.cut_at:.2f}s and links "
        f"reported down {run.links_down_s}s after the cut, cut-off node back {run.rejoined_s}s "
        f"after healing, terms {run.terms}"
    )
    assert not run.problems, "\n".join(run.problems)


async def _scenario(lab: HostLab, tmp_path: Path) -> Run:
    run = Run()
    timing = NodeTiming(request_timeout_s=2.0)
    async with LabCluster(lab, tmp_path / "data", tmp_path / "logs", timing) as cluster:
        run.first_leader = await cluster.start(leader_timeout=30.0)
        clock = monotonic_clock(time.monotonic())
        workload = ChaosWorkload(
            cluster.endpoints,
            WorkloadConfig(
                clients=4,
                keys=3,
                ops_per_key=80,
                op_timeout=(2.0, 4.0),
                attempt_timeout=(1.0, 2.0),
                think_s=0.02,
            ),
            seed=18,
            clock=clock,
        )
        run.terms.append(("start", await _terms(cluster)))
        stop = asyncio.Event()
        clients = asyncio.create_task(workload.run(stop))
        try:
            await asyncio.sleep(HEALTHY_S)
            run.terms.append(("before the partition", await _terms(cluster)))
            old = await cluster.leader()
            assert old is not None, "no leader before the partition"
            majority = [n for n in cluster.ids if n != old]
            run.cut_at = clock()
            lab.partition([{old}, set(majority)])
            links = asyncio.create_task(_links_down(cluster, majority, old, PARTITION_S - 1))
            new = await _wait_for_leader_among(cluster, majority, timeout=10.0)
            run.elected_at = clock()
            run.majority_leader = new or ""
            await _probe_minority(cluster, workload, old, until=run.cut_at + PARTITION_S)
            run.links_down_s = await links
            run.terms.append(("end of the partition", await _terms(cluster)))
            run.healed_at = clock()
            lab.heal()
            run.rejoined_s = await _rejoin_time(cluster, old, new, timeout=REJOIN_BOUND_S)
            await asyncio.sleep(max(0.0, run.healed_at + HEALED_S - clock()))
        finally:
            stop.set()
            await clients
        run.leader_after_heal = await cluster.wait_for_leader(10.0)
        run.terms.append(("after healing", await _terms(cluster)))
        reads = await final_reads(cluster, workload, timeout_s=10.0)
        run.finals.update(reads.values)
        run.problems.extend(f"final read of {k} failed: {e}" for k, e in reads.failed.items())
        convergence = await check_convergence(
            cluster, workload.keys.used, run.finals, reads.applied, bound_s=15.0
        )
        run.problems.extend(convergence.problems)
        run.problems.extend(f"node crashed: {c}" for c in cluster.crashed())
    run.records = workload.records
    run.problems.extend(_judge(run, old, majority))
    return run


async def _terms(cluster: ChaosCluster) -> dict[str, int]:
    return {node: s.term for node, s in sorted((await cluster.statuses()).items())}


async def _wait_for_leader_among(
    cluster: ChaosCluster, nodes: list[str], timeout: float
) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sts = await cluster.statuses()
        for node in nodes:
            s = sts.get(node)
            if s is not None and s.role == "leader":
                return node
        await asyncio.sleep(0.02)
    return None


async def _links_down(
    cluster: ChaosCluster, nodes: list[str], peer: str, timeout: float
) -> float | None:
    """Seconds until every node in `nodes` reports its link to peer down (GET /v1/status),
    or None. A silent partition sends no RST: only the sender's unacknowledged data tells."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        states = [await _link_state(cluster, node, peer) for node in nodes]
        if all(state == "down" for state in states):
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    return None


async def _link_state(cluster: ChaosCluster, node: str, peer: str) -> str | None:
    try:
        async with cluster.http().get(
            cluster.url(node) + "/v1/status", timeout=aiohttp.ClientTimeout(total=1.0)
        ) as resp:
            doc = await resp.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    for member in doc.get("members", []):
        if member.get("id") == peer and member.get("link"):
            return str(member["link"]["state"])
    return None


async def _rejoin_time(
    cluster: ChaosCluster, node: str, leader: str | None, timeout: float
) -> float | None:
    """Seconds until node follows leader and has applied what the leader had at the heal."""
    started = time.monotonic()
    target = await cluster.status(leader) if leader else None
    while target is not None and time.monotonic() - started < timeout:
        s = await cluster.status(node)
        if s is not None and s.leader == leader and s.applied_index >= target.commit_index:
            return time.monotonic() - started
        await asyncio.sleep(0.01)
    return None


async def _probe_minority(
    cluster: ChaosCluster, workload: ChaosWorkload, node: str, until: float
) -> None:
    """Until `until`, send writes and linearizable reads to the cut-off node alone; they join
    the history (as client MINORITY_CLIENT)."""
    policy = RetryPolicy(timeout=2.5, attempt_timeout=2.5, discovery_timeout=0.5)
    async with AsyncClient([cluster.url(node)], policy=policy) as kv:
        while workload.clock() < until - 2.5:
            key = workload.keys.active[0]
            for kind in ("put", "get"):
                rec = OpRecord(len(workload.records), MINORITY_CLIENT, kind, key)
                if kind == "put":
                    rec.value = f"minority.{rec.id}"
                else:
                    rec.consistency = "linearizable"
                workload.records.append(rec)
                await workload.execute(kv, rec)
    await asyncio.sleep(max(0.0, until - workload.clock()))


def _judge(run: Run, old: str, majority: list[str]) -> list[str]:
    problems: list[str] = []
    lin = check_linearizable(run.records, max_steps=5_000_000)
    if not lin.ok:
        problems.append(f"history {lin.verdict}: {lin.explanation}")
    checked, lost = find_lost_writes(run.records, run.finals)
    if lost or checked < 20:
        problems.append(f"acknowledged writes checked {checked}, lost {len(lost)}: {lost[:3]}")
    before, at_cut = run.terms[0][1], run.terms[1][1]
    if max(before.values()) != max(at_cut.values()):
        problems.append(f"an election without a fault (terms {before} -> {at_cut})")
    if run.majority_leader not in majority:
        problems.append(f"the majority {majority} elected no leader while {old} was cut off")
    during = [
        r
        for r in run.records
        if r.client >= 0
        and r.client != MINORITY_CLIENT
        and r.acknowledged
        and r.call > run.elected_at
        and r.ret is not None
        and r.ret < run.healed_at
    ]
    if len(during) < 10:
        problems.append(f"the majority acknowledged only {len(during)} writes while partitioned")
    minority = [r for r in run.records if r.client == MINORITY_CLIENT]
    served = [r for r in minority if r.outcome is OpOutcome.OK]
    if not minority or served:
        problems.append(
            f"the cut-off node must refuse writes and linearizable reads: {len(minority)} sent,"
            f" served {[r.to_json() for r in served[:3]]}"
        )
    if run.links_down_s is None or run.links_down_s > LINK_DOWN_BOUND_S:
        problems.append(
            f"{majority} still reported their links to {old} up "
            f"{run.links_down_s or PARTITION_S - 1:.1f}s into the partition"
        )
    if run.rejoined_s is None:
        problems.append(f"{old} did not follow the leader within {REJOIN_BOUND_S}s of healing")
    if run.leader_after_heal != run.majority_leader:
        problems.append(
            f"healing moved leadership: {run.majority_leader} led the majority, "
            f"{run.leader_after_heal} leads after healing"
        )
    end, healed = run.terms[2][1], run.terms[3][1]
    if max(healed.values()) != max(v for n, v in end.items() if n in majority):
        problems.append(f"healing started an election (terms {end} -> {healed})")
    return problems
