"""The node driver: one sans-IO loop that carries out the core's Readys for every shell."""

from raftkv.driver.compaction import SnapshotPolicy
from raftkv.driver.driver import NodeDriver
from raftkv.driver.ports import (
    LogStore,
    MachinePort,
    Observer,
    Scheduler,
    SnapshotSource,
    Transport,
    Waiter,
)

__all__ = [
    "LogStore",
    "MachinePort",
    "NodeDriver",
    "Observer",
    "Scheduler",
    "SnapshotPolicy",
    "SnapshotSource",
    "Transport",
    "Waiter",
]
