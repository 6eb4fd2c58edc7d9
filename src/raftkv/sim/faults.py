"""Fault schedules: what goes wrong, when, for how long. Generated up front from the seed,
resolved against the live cluster when they fire (e.g. "isolate the leader").
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass


class FaultKind(enum.Enum):
    PARTITION = "partition"  # isolate leader / a node, majority-minority, bridge, one-way
    LOSS = "loss"
    DUPLICATE = "duplicate"
    DELAY = "delay"  # long random delays: heavy reordering
    FLAP = "flap"  # a node's links go down and up repeatedly
    CRASH = "crash"  # kill a node (often the leader), losing unsynced writes; restart later
    PAUSE = "pause"  # freeze a node (GC pause, SIGSTOP); it resumes with a backlog of input
    CRASH_POINT = "crash-point"  # crash nodes right after a persist, restart them quickly
    MEMBERSHIP = "membership"  # remove a voter (maybe the leader), add it back, promote it
    # A node's next fsync fails with EIO (its data stays readable, never written back): the
    # node stops, restarts at once (no power cut), and loses power at the fault's end.
    FSYNC_ERROR = "fsync-error"
    # Power loss on a minority of nodes, each losing a byte of data it had synced (and that
    # a later durable record attests): they recover their logs from the others.
    CORRUPT = "corrupt"


ALL_FAULTS = frozenset(FaultKind)
NETWORK_FAULTS = (
    FaultKind.PARTITION,
    FaultKind.LOSS,
    FaultKind.DUPLICATE,
    FaultKind.DELAY,
    FaultKind.FLAP,
)


class PartitionShape(enum.Enum):
    ISOLATE_LEADER = "isolate-leader"
    ISOLATE_NODE = "isolate-node"
    MAJORITY_MINORITY = "majority-minority"
    BRIDGE = "bridge"  # two halves that only a bridge node connects
    ASYMMETRIC = "asymmetric"  # the leader can send but not receive, or the reverse


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    start: float
    end: float
    shape: PartitionShape | None = None
    rate: float = 0.0
    target_leader: bool = False


def parse_faults(spec: str) -> frozenset[FaultKind]:
    """'all', 'none' or a comma-separated list of fault kinds."""
    spec = spec.strip().lower()
    if spec == "all":
        return ALL_FAULTS
    if spec in ("", "none"):
        return frozenset()
    kinds = set()
    for name in spec.split(","):
        try:
            kinds.add(FaultKind(name.strip()))
        except ValueError:
            valid = ", ".join(k.value for k in FaultKind)
            raise ValueError(
                f"unknown fault {name.strip()!r} (valid: all, none, {valid})"
            ) from None
    return frozenset(kinds)


def schedule(rng: random.Random, kinds: frozenset[FaultKind], until: float) -> list[Fault]:
    """Network faults in sequence (one at a time) and crashes on their own overlapping track."""
    faults: list[Fault] = []
    network = [k for k in NETWORK_FAULTS if k in kinds]
    t = rng.uniform(100.0, 400.0)
    while network and t < until:
        kind = rng.choice(network)
        end = min(t + rng.uniform(150.0, 900.0), until)
        shape = rng.choice(list(PartitionShape)) if kind is FaultKind.PARTITION else None
        rate = {
            FaultKind.LOSS: rng.uniform(0.05, 0.4),
            FaultKind.DUPLICATE: rng.uniform(0.05, 0.4),
            FaultKind.DELAY: rng.uniform(15.0, 80.0),
            FaultKind.FLAP: rng.uniform(20.0, 120.0),
        }.get(kind, 0.0)
        faults.append(Fault(kind, t, end, shape, rate))
        t = end + rng.uniform(50.0, 400.0)
    t = rng.uniform(100.0, 500.0)
    while FaultKind.MEMBERSHIP in kinds and t < until:
        faults.append(Fault(FaultKind.MEMBERSHIP, t, t, target_leader=rng.random() < 0.2))
        t += rng.uniform(100.0, 500.0)
    process = [
        k
        for k in (
            FaultKind.CRASH,
            FaultKind.PAUSE,
            FaultKind.CRASH_POINT,
            FaultKind.FSYNC_ERROR,
            FaultKind.CORRUPT,
        )
        if k in kinds
    ]
    t = rng.uniform(100.0, 600.0)
    while process and t < until:
        kind = rng.choice(process)
        end = min(t + rng.uniform(20.0, 700.0), until)
        rate = rng.uniform(0.02, 0.2) if kind is FaultKind.CRASH_POINT else 0.0
        faults.append(Fault(kind, t, end, rate=rate, target_leader=rng.random() < 0.5))
        t = t + rng.uniform(80.0, 600.0)  # these may overlap: several nodes can be down
    return sorted(faults, key=lambda f: (f.start, f.kind.value))
