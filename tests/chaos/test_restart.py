"""A node killed with kill -9 restarts on its own data and catches up (the kill faults of
every campaign rely on it). Fails fast with the node's log when the restart crashes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from raftkv.chaos.cluster import ChaosCluster
from raftkv.client import AsyncClient, RetryPolicy

pytestmark = pytest.mark.timeout(60)


async def kill_and_restart(tmp: Path) -> tuple[list[str], int, int]:
    async with ChaosCluster(3, root=tmp / "data", log_dir=tmp / "logs") as cluster:
        leader = await cluster.start()
        victim = next(n for n in cluster.ids if n != leader)
        async with AsyncClient(cluster.endpoints, policy=RetryPolicy(timeout=10.0)) as kv:
            for i in range(20):
                await kv.put(f"k{i}", str(i))
            cluster.kill(victim)
            await kv.put("after", "kill")
            cluster.spawn(victim)
            status = None
            for _ in range(100):  # up to ~10 s for the restarted node to answer and catch up
                await asyncio.sleep(0.1)
                if cluster.crashed():
                    break
                status = await cluster.status(victim)
                lead = await cluster.status(leader)
                if status and lead and status.applied_index == lead.applied_index:
                    break
            applied = status.applied_index if status else -1
            lead_status = await cluster.status(leader)
            return cluster.crashed(), applied, lead_status.applied_index if lead_status else -2


def test_killed_node_restarts_on_its_data_and_catches_up(tmp_path: Path) -> None:
    crashed, applied, leader_applied = asyncio.run(kill_and_restart(tmp_path))
    logs = "\n".join(p.read_text()[-2000:] for p in sorted((tmp_path / "logs").glob("*.log")))
    assert not crashed, f"restart crashed: {crashed}\n{logs}"
    assert applied == leader_applied, f"restarted node at {applied}, leader at {leader_applied}"
