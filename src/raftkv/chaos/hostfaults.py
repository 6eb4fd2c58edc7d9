"""The faults a machine can do to its node that kill -9 cannot show: power cuts (the node's
file system loses what was not synced), torn writes, fsync errors, a full disk, and clocks
running fast or slow or jumping. They need the cluster's faultfs mounts (disk=True) or its
libfaketime clocks (clock=True); see raftkv.faultfs and raftkv.chaos.host.

Every power cut kills the node process (kill -9) BEFORE its file system drops its cache, as a
real power cut stops the CPU before the disk loses its cache. Each starter returns the heal;
as for every fault, once the heal returns every node runs and nothing is left injected.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

from raftkv.chaos.cluster import ChaosCluster

Heal = Callable[[], Awaitable[None]]
Started = tuple[Heal, list[str], str]  # the heal, the nodes hit, what was done
Starter = Callable[[str, float], Awaitable[Started]]

FAMILIES: dict[str, tuple[str, ...]] = {
    "power": ("power-cut-node", "power-cut-all"),
    "torn": ("torn-write",),
    "disk": ("fsync-error", "disk-full"),
    "clock": ("clock-fast", "clock-slow", "clock-jump"),
}
DISK_FAULTS = frozenset(FAMILIES["power"] + FAMILIES["torn"] + FAMILIES["disk"])
CLOCK_FAULTS = frozenset(FAMILIES["clock"])

# Clock rates stay inside the lease reads' assumption (docs/library.md): clock rates differ by
# less than the lease margin, 2 of 10 election ticks. A follower at 1.2x times out after
# 10/1.2 = 8.3 ticks of real time, still after the leader's 8-tick lease; a leader at 0.85x
# holds its lease for 8/0.85 = 9.4 ticks, still before any follower's 10-tick timeout.
FAST_RATES = (1.1, 1.2)
SLOW_RATES = (0.85, 0.9)
JUMPS_S = (2.0, 5.0, 30.0)  # forward only: CLOCK_MONOTONIC never goes back on Linux
STALL_S = 0.3  # how long a torn-write victim's disk hangs before the power goes


class HostFaults:
    def __init__(
        self,
        cluster: ChaosCluster,
        rng: random.Random,
        leader_or_any: Callable[[], Awaitable[str]],
        heal_all: Heal,
        down_s: float,
    ) -> None:
        self.cluster = cluster
        self.rng = rng
        self.leader_or_any = leader_or_any
        self.heal_all = heal_all
        self.down_s = down_s

    def starters(self) -> dict[str, Starter]:
        """fault name -> start(name, length) -> (heal, nodes, detail)."""
        return {
            "power-cut-node": self._power_cut_node,
            "power-cut-all": self._power_cut_all,
            "torn-write": self._torn_write,
            "fsync-error": self._fsync_error,
            "disk-full": self._disk_full,
            "clock-fast": self._clock_rate,
            "clock-slow": self._clock_rate,
            "clock-jump": self._clock_jump,
        }

    # --- power ----------------------------------------------------------------------------

    async def _cut(self, node_id: str, torn: bool = False) -> str:
        """kill -9 the node, then its file system loses power. Returns what was lost."""
        self.cluster.kill(node_id, reap=False)  # it may be stuck in a stalled fsync
        report = await self.cluster.fs(node_id).command_async({"cmd": "power-cut", "torn": torn})
        self.cluster.kill(node_id)  # reap it, now that its file system answers again
        lost = f"{node_id} lost {report['dropped_ops']} unsynced ops"
        tear = report.get("torn")
        if torn:
            lost += (
                f", tore {tear['file']} at {tear['offset']}: {tear['kept']}/{tear['length']} bytes"
                if isinstance(tear, dict)
                else ", nothing to tear"
            )
        return lost

    async def _power_cut_node(self, name: str, length: float) -> Started:
        victim = self.rng.choice(self.cluster.ids)
        lost = await self._cut(victim)
        return self.heal_all, [victim], f"power cut on {victim} ({lost}), then restart"

    async def _power_cut_all(self, name: str, length: float) -> Started:
        c = self.cluster
        for node_id in c.ids:  # every process dies before any disk loses its cache
            c.kill(node_id)
        lost = [await self._cut(n) for n in c.ids]
        await asyncio.sleep(min(self.down_s, length))
        for node_id in c.dead():
            c.spawn(node_id)
        return self.heal_all, c.ids, "power cut on every node (" + "; ".join(lost) + ")"

    async def _torn_write(self, name: str, length: float) -> Started:
        """The leader's disk hangs (its newest write is not synced), then the power goes and
        the newest unsynced write is torn."""
        victim = await self.leader_or_any()
        fs = self.cluster.fs(victim)
        await fs.command_async({"cmd": "stall-fsync", "stall": True})
        await asyncio.sleep(STALL_S)
        lost = await self._cut(victim, torn=True)  # the power cut also ends the stall
        return self.heal_all, [victim], f"torn write on the leader {victim} ({lost}), restart"

    # --- disk -----------------------------------------------------------------------------

    async def _fsync_error(self, name: str, length: float) -> Started:
        victim = self.rng.choice(self.cluster.ids)
        fs = self.cluster.fs(victim)
        self.cluster.mark_disk_fault(victim)
        await fs.command_async({"cmd": "fail-fsync", "count": 1})

        async def heal() -> None:
            await fs.command_async({"cmd": "fail-fsync", "count": 0})
            await self.heal_all()  # restarts it if it stopped (fail-stop)

        return heal, [victim], f"the next fsync on {victim} fails with EIO"

    async def _disk_full(self, name: str, length: float) -> Started:
        victim = self.rng.choice(self.cluster.ids)
        fs = self.cluster.fs(victim)
        self.cluster.mark_disk_fault(victim)
        got = await fs.command_async({"cmd": "quota", "free": 0})

        async def heal() -> None:
            await fs.command_async({"cmd": "quota", "bytes": None})
            await self.heal_all()

        return heal, [victim], f"{victim}'s disk is full ({got['used']} bytes used, ENOSPC)"

    # --- clocks ---------------------------------------------------------------------------

    async def _clock_rate(self, name: str, length: float) -> Started:
        victim = self.rng.choice(self.cluster.ids)
        rate = self.rng.choice(FAST_RATES if name == "clock-fast" else SLOW_RATES)
        clock = self.cluster.clock_of(victim)
        clock.set_rate(rate)

        async def heal() -> None:
            clock.set_rate(1.0)  # continuous: no jump back
            await self.heal_all()

        return heal, [victim], f"{victim}'s clock runs at {rate:g}x"

    async def _clock_jump(self, name: str, length: float) -> Started:
        victim = self.rng.choice(self.cluster.ids)
        jump = self.rng.choice(JUMPS_S)
        self.cluster.clock_of(victim).jump(jump)
        return self.heal_all, [victim], f"{victim}'s clock jumps {jump:g}s ahead"
