"""The node driver: one sans-IO loop that carries out the core's Readys for every shell."""

from raftkv.driver.compaction import SnapshotPolicy
from raftkv.driver.driver import NodeDriver
from raftkv.driver.ports import (
    LogStore,
    Observer,
    Scheduler,
    SnapshotSource,
    StateMachine,
    Transport,
    Waiter,
)

__all__ = [
    "LogStore",
    "NodeDriver",
    "Observer",
    "Scheduler",
    "SnapshotPolicy",
    "SnapshotSource",
    "StateMachine",
    "Transport",
    "Waiter",
]
