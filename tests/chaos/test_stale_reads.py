"""An old leader, paused (SIGSTOP) or cut off, must not serve a stale read once a new leader
has acknowledged a newer write: the reads are sent to it after that write was acknowledged
(they wait in its socket while it is paused), and each must return the new value or an
error, never the old one. Linearizable and lease reads alike."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from raftkv.chaos.cluster import ChaosCluster
from raftkv.client import AsyncClient, RetryPolicy

pytestmark = pytest.mark.timeout(90)

READS = ("linearizable", "lease") * 3


async def read_at(cluster: ChaosCluster, node: str, consistency: str) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as http,  # a fresh connection: nothing pooled from before
        http.get(
            f"{cluster.url(node)}/v1/kv/k",
            params={"consistency": consistency},
            timeout=aiohttp.ClientTimeout(total=20),
        ) as resp,
    ):
        return resp.status, await resp.read()


async def old_leader_reads(tmp: Path, fault: str) -> list[tuple[str, int, bytes]]:
    async with ChaosCluster(3, root=tmp / "data", log_dir=tmp / "logs") as cluster:
        old = await cluster.start()
        others = [n for n in cluster.ids if n != old]
        policy = RetryPolicy(timeout=15.0, attempt_timeout=2.0)
        async with AsyncClient(cluster.endpoints, policy=policy) as kv:
            await kv.put("k", "v1")
            await kv.get("k", consistency="lease")  # the old leader holds a fresh lease
        if fault == "pause":
            cluster.pause(old)
        else:
            await cluster.set_net(old, {"isolate": True})
        async with AsyncClient([cluster.url(n) for n in others], policy=policy) as kv:
            await kv.put("k", "v2")  # acknowledged by a new leader
        reads = [asyncio.create_task(read_at(cluster, old, c)) for c in READS]
        await asyncio.sleep(0.3)  # let every read reach the old leader's socket
        cluster.resume(old)
        answers = await asyncio.gather(*reads)
        return [(c, status, body) for c, (status, body) in zip(READS, answers, strict=True)]


@pytest.mark.parametrize("fault", ["pause", "isolate"])
def test_old_leader_serves_no_stale_read(tmp_path: Path, fault: str) -> None:
    answers = asyncio.run(old_leader_reads(tmp_path, fault))
    stale = [(c, s, b) for c, s, b in answers if s == 200 and b != b"v2"]
    assert not stale, f"the old leader answered stale reads after {fault}: {stale}"
    assert all(s in (200, 503, 504) for _, s, _ in answers), answers
