"""How raftkv's timing behaves at WAN round trips: three real hosts (HostLab), one RTT at a time.

    make wan-timing                       # the RTTs of docs/deploy.md, default timing
    cd tests && ../.venv/bin/python -m e2e.wan_timing --rtt 400 --tick-ms 100 --election-ticks 20

For each RTT, on a fresh 3-node cluster (Raft and HTTP over the hosts' own addresses):

- stability: a light write load (one client, a put every 50 ms) for --stable-s seconds; the
  elections (term changes) and pre-votes (a follower that stopped hearing its leader) in it;
- latency: sequential puts, linearizable gets and lease gets from one client next to the leader
  (client traffic is not delayed, so each is the Raft cost: round trips between the hosts);
- failover: --failovers times, kill -9 the leader and time until both survivors agree on a
  new one; the killed node is restarted and must follow it before the next round.

Prints a table and writes every figure as JSON (--out). Needs root (network namespaces).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from raftkv.chaos.cluster import ChaosCluster, NodeTiming
from raftkv.client import AsyncClient, RetryPolicy

from .lab_cluster import LabCluster
from .netns import HostLab


@dataclass
class Figures:
    rtt_ms: float
    tick_ms: float
    election_ticks: int
    measured_rtt_ms: float = 0.0
    stable_s: float = 0.0
    elections: int = 0  # term changes during the stability window
    pre_votes: int = 0  # followers that started a pre-vote during it
    put_ms: dict[str, float] = field(default_factory=dict)
    get_ms: dict[str, float] = field(default_factory=dict)
    lease_get_ms: dict[str, float] = field(default_factory=dict)
    failover_s: list[float | None] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def measure(lab: HostLab, work: Path, figures: Figures, args: argparse.Namespace) -> None:
    timing = NodeTiming(tick_ms=figures.tick_ms, election_ticks=figures.election_ticks)
    async with LabCluster(lab, work / "data", work / "logs", timing) as cluster:
        await cluster.start(leader_timeout=60.0)
        leader = await cluster.wait_for_leader(30.0)
        if leader is None:
            figures.errors.append("no leader agreed by a majority within 30 s of starting")
            return
        phases: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("stability", lambda: _stability(cluster, work / "logs", figures, args.stable_s)),
            ("latency", lambda: _latency(cluster, figures, args.latency_s)),
            ("failover", lambda: _failovers(cluster, figures, args.failovers)),
        ]
        for name, phase in phases:
            try:
                await phase()
            except Exception as e:  # a timing that does not work: say so, go on
                figures.errors.append(f"{name}: {type(e).__name__}: {str(e)[:300]}")


async def _stability(cluster: ChaosCluster, logs: Path, figures: Figures, seconds: float) -> None:
    before = await _max_term(cluster)
    marks = _log_counts(logs)
    stop = asyncio.Event()
    load = asyncio.create_task(_light_load(cluster, stop))
    await asyncio.sleep(seconds)
    stop.set()
    await load
    figures.stable_s = seconds
    figures.elections = await _max_term(cluster) - before
    figures.pre_votes = _log_counts(logs) - marks


async def _light_load(cluster: ChaosCluster, stop: asyncio.Event) -> None:
    policy = RetryPolicy(timeout=5.0, attempt_timeout=5.0)
    async with AsyncClient(cluster.endpoints, policy=policy) as kv:
        n = 0
        while not stop.is_set():
            with contextlib.suppress(Exception):  # an election may refuse a write
                await kv.put("stability", str(n))
            n += 1
            await asyncio.sleep(0.05)


def _log_counts(logs: Path) -> int:
    """Pre-votes started, in the node logs so far."""
    return sum(
        log.read_text(errors="replace").count("pre-candidate in term") for log in logs.glob("*.log")
    )


async def _max_term(cluster: ChaosCluster) -> int:
    return max((s.term for s in (await cluster.statuses()).values()), default=0)


async def _latency(cluster: ChaosCluster, figures: Figures, seconds: float) -> None:
    leader = await cluster.wait_for_leader(30.0)
    assert leader is not None
    async with AsyncClient([cluster.url(leader)], policy=RetryPolicy(timeout=10.0)) as kv:
        await kv.put("latency", "0")
        figures.put_ms = await _timed(lambda: kv.put("latency", "x" * 64), seconds)
        figures.get_ms = await _timed(lambda: kv.get("latency"), seconds)
        figures.lease_get_ms = await _timed(lambda: kv.get("latency", consistency="lease"), seconds)


async def _timed(op: Callable[[], Awaitable[object]], seconds: float) -> dict[str, float]:
    samples: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        await op()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "n": len(samples),
        "p50": round(statistics.median(samples), 1),
        "p99": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 1),
        "max": round(samples[-1], 1),
    }


async def _failovers(cluster: ChaosCluster, figures: Figures, count: int) -> None:
    for _ in range(count):
        figures.failover_s.append(await _failover(cluster, figures))


async def _failover(cluster: ChaosCluster, figures: Figures) -> float | None:
    """kill -9 the leader; seconds until the survivors agree on a new one (None: not in 30 s).
    Then restart the old leader and wait for it to follow."""
    old = await cluster.wait_for_leader(30.0)
    if old is None:
        figures.errors.append("no leader before a failover")
        return None
    started = time.monotonic()
    cluster.kill(old)
    new = await cluster.wait_for_leader(30.0)
    took = None if new is None else round(time.monotonic() - started, 3)
    cluster.spawn(old)
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        s = await cluster.status(old)
        if s is not None and s.leader is not None and s.leader != old:
            break
        await asyncio.sleep(0.1)
    else:
        figures.errors.append(f"{old} did not rejoin within 60 s of its restart")
    await asyncio.sleep(1.0)
    return took


def _row(f: Figures) -> str:
    fails = [x for x in f.failover_s if x is not None]
    failover = (
        f"{statistics.median(fails):.2f} / {max(fails):.2f}"
        + (
            f" ({len(f.failover_s) - len(fails)} none in 30 s)"
            if len(fails) < len(f.failover_s)
            else ""
        )
        if fails
        else "none"
    )
    return (
        f"| {f.rtt_ms:g} ({f.measured_rtt_ms:.0f}) | {f.tick_ms:g} x {f.election_ticks} "
        f"| {f.elections} / {f.pre_votes} in {f.stable_s:g} s "
        f"| {f.put_ms.get('p50', 0):.1f} / {f.put_ms.get('p99', 0):.1f} "
        f"| {f.get_ms.get('p50', 0):.1f} / {f.get_ms.get('p99', 0):.1f} "
        f"| {f.lease_get_ms.get('p50', 0):.1f} / {f.lease_get_ms.get('p99', 0):.1f} "
        f"| {failover} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rtt", default="50,100,200,400", help="round trips in ms, comma-separated")
    ap.add_argument("--tick-ms", type=float, default=50.0)
    ap.add_argument("--election-ticks", type=int, default=10)
    ap.add_argument("--stable-s", type=float, default=60.0)
    ap.add_argument("--latency-s", type=float, default=10.0)
    ap.add_argument("--failovers", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("wan-timing.json"))
    args = ap.parse_args()
    results: list[Figures] = []
    print(
        "| RTT ms (measured) | tick ms x election ticks | elections / pre-votes "
        "| put p50 / p99 ms | linearizable get p50 / p99 ms | lease get p50 / p99 ms "
        "| failover s, median / max |"
    )
    print("|---|---|---|---|---|---|---|")
    for rtt in (float(x) for x in args.rtt.split(",")):
        figures = Figures(rtt, args.tick_ms, args.election_ticks)
        work = Path(tempfile.mkdtemp(prefix="raftkv-wan-"))
        with HostLab(3, delay_ms=rtt / 2, log_dir=work) as lab:
            figures.measured_rtt_ms = lab.rtt_ms("n1", "n2")
            asyncio.run(measure(lab, work, figures, args))
            if problem := lab.delayer_problem():
                figures.errors.append(problem)
        results.append(figures)
        args.out.write_text(json.dumps([asdict(f) for f in results], indent=1) + "\n")
        print(_row(figures), flush=True)
        for error in figures.errors:
            print(f"  {rtt:g} ms: {error} (node logs kept in {work / 'logs'})", flush=True)
        if not figures.errors:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
