"""The simulated network: per-link blocking, loss, duplication and random delay (reordering).

Pure: randomness comes from the injected random.Random, time is the simulator's.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from raftkv.core.types import NodeId


class Network:
    def __init__(self, rng: random.Random, nodes: Iterable[NodeId]) -> None:
        self._rng = rng
        self.nodes = tuple(nodes)
        self.blocked: set[tuple[NodeId, NodeId]] = set()  # directed (src, dst) links cut
        self.loss = 0.0
        self.duplicate = 0.0
        self.min_delay = 1.0
        self.max_delay = 4.0

    def delays(self, src: NodeId, dst: NodeId) -> list[float]:
        """Delivery delays for one message: [] if lost, two entries if duplicated."""
        if (src, dst) in self.blocked or self._rng.random() < self.loss:
            return []
        copies = 2 if self._rng.random() < self.duplicate else 1
        return [self._rng.uniform(self.min_delay, self.max_delay) for _ in range(copies)]

    def partition(self, *groups: Iterable[NodeId]) -> None:
        """Only nodes in the same group can talk; nodes in no group are isolated."""
        member = {n: i for i, g in enumerate(groups) for n in g}
        self.blocked = {
            (a, b)
            for a in self.nodes
            for b in self.nodes
            if a != b and (a not in member or b not in member or member[a] != member[b])
        }

    def isolate(self, node: NodeId) -> None:
        for other in self.nodes:
            if other != node:
                self.blocked.add((node, other))
                self.blocked.add((other, node))

    def cut(self, src: NodeId, dst: NodeId) -> None:
        """Cut one direction only (asymmetric partition)."""
        self.blocked.add((src, dst))

    def heal(self) -> None:
        self.blocked.clear()
        self.loss = 0.0
        self.duplicate = 0.0
        self.min_delay, self.max_delay = 1.0, 4.0

    def describe(self) -> str:
        if not self.blocked:
            return "connected"
        return "cut " + ",".join(f"{a}->{b}" for a, b in sorted(self.blocked))
