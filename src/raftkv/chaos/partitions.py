"""Partition shapes as pure functions: node ids in, reach out.

A reach maps every node to the set of nodes it can talk to (itself included). Invariant of
every shape: reach is symmetric (a in reach[b] iff b in reach[a]), because the runtime's
fault hook drops a blocked peer's traffic in both directions.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

Reach = dict[str, set[str]]


def minority_size(n: int) -> int:
    return max(1, (n - 1) // 2)


def isolate(ids: Sequence[str], victim: str) -> Reach:
    reach = {n: set(ids) - {victim} for n in ids}
    reach[victim] = {victim}
    return reach


def split(ids: Sequence[str], minority: Sequence[str]) -> Reach:
    """Two sides that cannot talk to each other."""
    small = set(minority)
    large = set(ids) - small
    return {n: set(small) if n in small else set(large) for n in ids}


def random_split(ids: Sequence[str], rng: random.Random) -> tuple[Reach, list[str]]:
    """A random minority | majority split; (reach, the minority)."""
    shuffled = list(ids)
    rng.shuffle(shuffled)
    minority = sorted(shuffled[: minority_size(len(ids))])
    return split(ids, minority), minority


def bridge(ids: Sequence[str], rng: random.Random) -> tuple[Reach, str]:
    """Two halves that cannot talk, and one bridge node that talks to both; (reach, bridge).
    With 5 nodes each half plus the bridge is 3, a majority; with 3, each is 2."""
    shuffled = list(ids)
    rng.shuffle(shuffled)
    middle, rest = shuffled[0], shuffled[1:]
    left, right = set(rest[: len(rest) // 2]), set(rest[len(rest) // 2 :])
    reach = {n: left | {middle} for n in left} | {n: right | {middle} for n in right}
    reach[middle] = set(ids)
    return reach, middle


def ring(ids: Sequence[str], rng: random.Random) -> tuple[Reach, list[str]]:
    """Nodes on a random ring, each talking to its neighbours within distance span, with
    2 * span + 1 a majority: every node sees a majority and no two see the same one
    (Jepsen's majorities ring). Needs 5 or more nodes to differ from no partition at all."""
    order = list(ids)
    rng.shuffle(order)
    n = len(order)
    span = (n // 2 + 1) // 2
    reach = {order[i]: {order[(i + d) % n] for d in range(-span, span + 1)} for i in range(n)}
    return reach, order


def drop_lists(reach: Reach) -> dict[str, list[str]]:
    """What each node's fault hook must drop: everyone outside its reach."""
    everyone = set(reach)
    return {n: sorted(everyone - r - {n}) for n, r in reach.items()}


def is_symmetric(reach: Reach) -> bool:
    return all((a in reach[b]) == (b in reach[a]) for a in reach for b in reach)
