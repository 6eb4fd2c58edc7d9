"""The nemesis: faults injected into the running cluster on a seeded schedule.

Faults come one at a time: a quiet spell, one fault for a while, its heal, and so on, each
enabled fault once per round in a seeded random order. Each fault picks its targets when it
starts (e.g. "the leader" is whoever leads at that moment) and records what it did in a
FaultEvent. Network faults use the nodes' fault hooks (POST /v1/debug/net), which drop a
blocked peer's traffic both ways, except one-way partitions, which cut relays
(raftkv.chaos.proxy). Process faults use signals: SIGKILL and a restart on the same data,
SIGSTOP and SIGCONT. Power cuts, torn writes, disk and clock faults are in hostfaults.py.

Invariant: when a fault's heal() returns, every node runs (restarted or continued) and no
network fault is left on any node.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from raftkv.chaos import hostfaults, partitions
from raftkv.chaos.cluster import ChaosCluster

FAMILIES: dict[str, tuple[str, ...]] = {
    "partition": (
        "partition-leader",
        "partition-half",
        "partition-bridge",
        "partition-ring",
        "partition-flap",
        "partition-oneway",
    ),
    "kill": ("kill-leader", "kill-minority", "kill-all"),
    "pause": ("pause-leader", "pause-node"),
    "delay": ("delay-leader", "delay-all"),
    "lossy": ("loss-all", "duplicate-all"),
    **hostfaults.FAMILIES,
}
ALL_FAULTS: tuple[str, ...] = tuple(f for fs in FAMILIES.values() for f in fs)


def expand_faults(spec: str) -> list[str]:
    """'partition,kill-leader' -> the fault names; 'all' = every fault; 'none' = no fault."""
    names: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part or part == "none":
            continue
        if part == "all":
            chosen: Sequence[str] = ALL_FAULTS
        elif part in FAMILIES:
            chosen = FAMILIES[part]
        elif part in ALL_FAULTS:
            chosen = (part,)
        else:
            known = ", ".join([*FAMILIES, *ALL_FAULTS, "all", "none"])
            raise ValueError(f"unknown fault {part!r}; known: {known}")
        names.extend(n for n in chosen if n not in names)
    return names


def family_of(name: str) -> str:
    return next(fam for fam, names in FAMILIES.items() if name in names)


@dataclass(slots=True)
class FaultEvent:
    name: str
    detail: str
    start: float  # seconds since the run started
    end: float | None = None
    nodes: list[str] = field(default_factory=list)
    leader_after_s: float | None = None  # from the heal until a leader; None: none in bound

    @property
    def family(self) -> str:
        return family_of(self.name)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "detail": self.detail,
            "nodes": self.nodes,
            "start": round(self.start, 3),
            "end": None if self.end is None else round(self.end, 3),
            "leader_after_s": None
            if self.leader_after_s is None
            else round(self.leader_after_s, 3),
        }


@dataclass(frozen=True, slots=True)
class NemesisConfig:
    faults: tuple[str, ...]
    fault_s: tuple[float, float] = (2.0, 4.0)  # how long one fault lasts
    quiet_s: tuple[float, float] = (1.0, 2.0)  # healthy time between faults
    kill_all_down_s: float = 1.0  # how long every node stays dead in kill-all
    flap_s: tuple[float, float] = (0.3, 1.0)  # one half-period of a flapping partition
    delays_ms: tuple[int, ...] = (50, 150, 300)
    losses: tuple[float, ...] = (0.1, 0.2, 0.3)  # share of Raft messages each node loses
    duplicates: tuple[float, ...] = (0.2, 0.5)  # share of Raft messages each node sends twice
    leader_bound_s: float = 10.0  # after each heal, a leader must appear within this


Heal = Callable[[], Awaitable[None]]


class Nemesis:
    def __init__(
        self,
        cluster: ChaosCluster,
        config: NemesisConfig,
        seed: int,
        clock: Callable[[], float],
    ) -> None:
        self.cluster = cluster
        self.config = config
        self.clock = clock
        self.rng = random.Random(seed)
        self.events: list[FaultEvent] = []
        self._bag: list[str] = []  # the faults still due in this round
        self._host = hostfaults.HostFaults(
            cluster, self.rng, self._leader_or_any, self._heal_all, config.kill_all_down_s
        )

    def next_fault(self) -> str:
        """Faults come in rounds: each enabled fault once per round, in a random order."""
        if not self._bag:
            self._bag = list(self.config.faults)
            self.rng.shuffle(self._bag)
        return self._bag.pop()

    async def run(self, until: float) -> None:
        """Inject faults until the clock reaches `until`; every fault is healed on return."""
        cfg = self.config
        if not cfg.faults:
            await asyncio.sleep(max(0.0, until - self.clock()))
            return
        await asyncio.sleep(self.rng.uniform(*cfg.quiet_s))
        # Every enabled fault is injected at least once, even if that takes past `until`
        # (a slow machine, long recoveries): a campaign never passes without trying one.
        while self.clock() + cfg.fault_s[0] < until or not self.covered():
            name = self.next_fault()
            length = max(cfg.fault_s[0], min(self.rng.uniform(*cfg.fault_s), until - self.clock()))
            await self.inject(name, length)
            quiet = self.rng.uniform(*cfg.quiet_s)
            await asyncio.sleep(max(0.0, min(quiet, until - self.clock())))

    def covered(self) -> bool:
        """Has every enabled fault been injected at least once?"""
        return set(self.config.faults) <= {ev.name for ev in self.events}

    async def inject(self, name: str, length: float) -> FaultEvent:
        """Inject one fault, keep it for `length` seconds, heal it; the event records it."""
        event = FaultEvent(name, "", self.clock())
        self.events.append(event)
        heal = await self._start(name, event, length)
        try:
            await asyncio.sleep(max(0.0, length - (self.clock() - event.start)))
        finally:
            await asyncio.shield(heal())
            event.end = self.clock()
        # Every heal must give the cluster a leader (a majority agreeing) within the bound.
        if await self.cluster.wait_for_leader(self.config.leader_bound_s) is not None:
            event.leader_after_s = self.clock() - event.end
        return event

    async def _start(self, name: str, event: FaultEvent, length: float) -> Heal:
        host = self._host.starters().get(name)
        if host is not None:
            heal, event.nodes, event.detail = await host(name, length)
            return heal
        starters: dict[str, Callable[[FaultEvent, float], Awaitable[Heal]]] = {
            "partition-leader": self._partition_leader,
            "partition-half": self._partition_half,
            "partition-bridge": self._partition_bridge,
            "partition-ring": self._partition_ring,
            "partition-flap": self._partition_flap,
            "partition-oneway": self._partition_oneway,
            "kill-leader": self._kill_leader,
            "kill-minority": self._kill_minority,
            "kill-all": self._kill_all,
            "pause-leader": self._pause_leader,
            "pause-node": self._pause_node,
            "delay-leader": self._delay_leader,
            "delay-all": self._delay_all,
            "loss-all": self._loss_all,
            "duplicate-all": self._duplicate_all,
        }
        return await starters[name](event, length)

    # --- helpers ------------------------------------------------------------------------

    async def _leader_or_any(self) -> str:
        """The current leader; a random node when there is none right now."""
        leader = await self.cluster.any_leader()
        return leader if leader is not None else self.rng.choice(self.cluster.ids)

    async def _heal_all(self) -> None:
        """Every node running and no network fault anywhere."""
        c = self.cluster
        for node_id in c.ids:
            c.resume(node_id)
        for node_id in c.dead():
            c.spawn(node_id)
        await c.heal_network()

    async def _apply_reach(self, reach: partitions.Reach) -> None:
        """Each node drops its traffic with every node outside its reach."""
        c = self.cluster
        drops = partitions.drop_lists(reach)
        await asyncio.gather(*(c.set_net(n, {"drop_to": drops[n]}) for n in c.ids))

    # --- partitions -----------------------------------------------------------------------

    async def _partition_leader(self, event: FaultEvent, length: float) -> Heal:
        leader = await self._leader_or_any()
        await self.cluster.set_net(leader, {"isolate": True})
        event.nodes, event.detail = [leader], f"isolated the leader {leader}"
        return self.cluster.heal_network

    async def _partition_half(self, event: FaultEvent, length: float) -> Heal:
        reach, minority = partitions.random_split(self.cluster.ids, self.rng)
        await self._apply_reach(reach)
        majority = sorted(set(self.cluster.ids) - set(minority))
        event.nodes = minority
        event.detail = f"split {','.join(minority)} from {','.join(majority)}"
        return self.cluster.heal_network

    async def _partition_bridge(self, event: FaultEvent, length: float) -> Heal:
        reach, middle = partitions.bridge(self.cluster.ids, self.rng)
        await self._apply_reach(reach)
        sides = {",".join(sorted(r - {middle})) for n, r in reach.items() if n != middle}
        event.nodes = [middle]
        event.detail = f"bridge {middle} between {' and '.join(sorted(sides))}"
        return self.cluster.heal_network

    async def _partition_ring(self, event: FaultEvent, length: float) -> Heal:
        if self.cluster.size < 5:  # a ring of 3 is fully connected: cut it in two instead
            return await self._partition_half(event, length)
        reach, order = partitions.ring(self.cluster.ids, self.rng)
        await self._apply_reach(reach)
        seen = len(reach[order[0]])
        event.nodes, event.detail = order, "ring " + "-".join(order) + f" (each sees {seen})"
        return self.cluster.heal_network

    async def _partition_flap(self, event: FaultEvent, length: float) -> Heal:
        """Isolate a random node, heal, isolate another, ... until healed."""
        c, rng, cfg = self.cluster, self.rng, self.config
        victims: list[str] = []

        async def flap() -> None:
            while True:
                victim = rng.choice(c.ids)
                victims.append(victim)
                await c.set_net(victim, {"isolate": True})
                await asyncio.sleep(rng.uniform(*cfg.flap_s))
                await c.heal_network()
                await asyncio.sleep(rng.uniform(*cfg.flap_s))

        task = asyncio.create_task(flap(), name="chaos-flap")

        async def heal() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await c.heal_network()
            event.nodes = sorted(set(victims))
            event.detail = f"flapping isolation, {len(victims)} flaps: {' '.join(victims)}"

        event.detail = "flapping isolation"
        return heal

    async def _partition_oneway(self, event: FaultEvent, length: float) -> Heal:
        """The leader goes deaf (no one reaches it) or mute (it reaches no one), one way only
        (through the relays of raftkv.chaos.proxy)."""
        c = self.cluster
        leader = await self._leader_or_any()
        others = [n for n in c.ids if n != leader]
        if self.rng.random() < 0.5:
            c.cut_links([(n, leader) for n in others])
            event.detail = f"the leader {leader} hears no one (one-way: it can still send)"
        else:
            c.cut_links([(leader, n) for n in others])
            event.detail = f"the leader {leader} reaches no one (one-way: it still hears)"
        event.nodes = [leader]
        return c.heal_network

    # --- process faults -----------------------------------------------------------------

    async def _kill_leader(self, event: FaultEvent, length: float) -> Heal:
        leader = await self._leader_or_any()
        self.cluster.kill(leader)
        event.nodes, event.detail = [leader], f"kill -9 the leader {leader}, then restart"
        return self._heal_all

    async def _kill_minority(self, event: FaultEvent, length: float) -> Heal:
        victims = self.rng.sample(self.cluster.ids, partitions.minority_size(self.cluster.size))
        for v in victims:
            self.cluster.kill(v)
        event.nodes = sorted(victims)
        event.detail = f"kill -9 {','.join(event.nodes)}, then restart"
        return self._heal_all

    async def _kill_all(self, event: FaultEvent, length: float) -> Heal:
        """Every node dies at once; all restart after kill_all_down_s (the rest of the window
        is the cluster recovering)."""
        c = self.cluster
        for node_id in c.ids:
            c.kill(node_id)
        event.nodes, event.detail = c.ids, "kill -9 every node, then restart all"
        await asyncio.sleep(min(self.config.kill_all_down_s, length))
        for node_id in c.dead():
            c.spawn(node_id)
        return self._heal_all

    async def _pause_leader(self, event: FaultEvent, length: float) -> Heal:
        leader = await self._leader_or_any()
        self.cluster.pause(leader)
        event.nodes, event.detail = [leader], f"SIGSTOP the leader {leader}, then SIGCONT"
        return self._heal_all

    async def _pause_node(self, event: FaultEvent, length: float) -> Heal:
        victim = self.rng.choice(self.cluster.ids)
        self.cluster.pause(victim)
        event.nodes, event.detail = [victim], f"SIGSTOP {victim}, then SIGCONT"
        return self._heal_all

    # --- delay ----------------------------------------------------------------------------

    async def _delay_leader(self, event: FaultEvent, length: float) -> Heal:
        leader = await self._leader_or_any()
        ms = self.rng.choice(self.config.delays_ms)
        await self.cluster.set_net(leader, {"delay_ms": ms})
        event.nodes, event.detail = [leader], f"delay {leader}'s (leader) messages by {ms} ms"
        return self.cluster.heal_network

    async def _delay_all(self, event: FaultEvent, length: float) -> Heal:
        c = self.cluster
        ms = self.rng.choice(self.config.delays_ms)
        await asyncio.gather(*(c.set_net(n, {"delay_ms": ms}) for n in c.ids))
        event.nodes, event.detail = c.ids, f"delay every node's messages by {ms} ms"
        return c.heal_network

    # --- lossy links ----------------------------------------------------------------------

    async def _loss_all(self, event: FaultEvent, length: float) -> Heal:
        c = self.cluster
        p = self.rng.choice(self.config.losses)
        await asyncio.gather(*(c.set_net(n, {"loss": p}) for n in c.ids))
        event.nodes, event.detail = c.ids, f"every node loses {p:.0%} of its Raft messages"
        return c.heal_network

    async def _duplicate_all(self, event: FaultEvent, length: float) -> Heal:
        c = self.cluster
        p = self.rng.choice(self.config.duplicates)
        await asyncio.gather(*(c.set_net(n, {"duplicate": p}) for n in c.ids))
        event.nodes, event.detail = c.ids, f"every node sends {p:.0%} of its Raft messages twice"
        return c.heal_network
