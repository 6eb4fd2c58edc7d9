"""The stall metrics: raftkv_loop_lag_seconds (how late each tick reached the loop) and, on
followers, raftkv_leader_silence_seconds (time between two cycles that heard from the leader)
both show a blocked event loop, with its length as their _max."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from .cluster import LocalCluster, run_async

BLOCK_S = 0.6


async def _samples(c: LocalCluster, nid: str) -> dict[str, float]:
    async with c.client.get(c.url(nid, "/metrics")) as r:
        text = await r.text()
    return {
        s.name: s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name.startswith(("raftkv_loop_lag_seconds", "raftkv_leader_silence_seconds"))
        and "le" not in s.labels
    }


def test_a_blocked_loop_shows_as_loop_lag_and_leader_silence(tmp_path: Path) -> None:
    async def main() -> None:
        # 25 ms ticks, 60-tick elections: the block is 24 ticks, far from an election.
        async with LocalCluster(tmp_path, election_ticks=60) as c:
            leader = await c.leader()
            followers = [n for n in c.ids if n != leader]
            await asyncio.sleep(0.5)  # heartbeats flow and are timed
            before = {nid: await _samples(c, nid) for nid in c.ids}
            time.sleep(BLOCK_S)  # the point: every node's loop is blocked
            await asyncio.sleep(0.3)
            after = {nid: await _samples(c, nid) for nid in c.ids}
            for nid in c.ids:
                assert before[nid]["raftkv_loop_lag_seconds_max"] < BLOCK_S - 0.05
                assert after[nid]["raftkv_loop_lag_seconds_max"] >= BLOCK_S - 0.05
                assert after[nid]["raftkv_loop_lag_seconds_count"] > 0
            for nid in followers:
                assert before[nid]["raftkv_leader_silence_seconds_count"] > 0
                assert before[nid]["raftkv_leader_silence_seconds_max"] < BLOCK_S - 0.05
                assert after[nid]["raftkv_leader_silence_seconds_max"] >= BLOCK_S - 0.05
            # The leader hears from no leader: it times nothing.
            assert after[leader]["raftkv_leader_silence_seconds_count"] == 0
            assert await c.leader() == leader

    run_async(main)
