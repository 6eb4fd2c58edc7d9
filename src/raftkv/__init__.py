"""raftkv: a Raft-replicated key-value store and consensus library.

The library API (replicate your own Python state machine, docs/library.md):

    from raftkv import Node, Replicated, replicated, query

The errors (one tree, raftkv.errors) are imported eagerly; the library API lazily on first use,
so `import raftkv.core` or the CLI do not pay for asyncio, aiohttp and the runtime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from raftkv.errors import (
    BadRequest,
    CallerError,
    CorruptionError,
    DiskError,
    NoQuorum,
    NotLeader,
    PeerError,
    ProposalDropped,
    ProtocolError,
    RaftkvError,
    SessionExpired,
    Timeout,
    TooLarge,
    WrongCluster,
)

if TYPE_CHECKING:
    from raftkv.embed import (
        CommandFailed,
        Consistency,
        Counter,
        EncodeError,
        EventKind,
        EventStream,
        LeadershipEvent,
        LockInfo,
        LockManager,
        LockSession,
        LockSessionExpired,
        Node,
        NodeOptions,
        NodeStatus,
        NodeStopped,
        NotAttached,
        PeerAddress,
        Replicated,
        ReplicatedDict,
        SessionInfo,
        SessionLimits,
        StateMachine,
        SyncNode,
        query,
        replicated,
    )

__version__ = "0.1.0"

_EMBED = frozenset(
    {
        "CommandFailed",
        "Consistency",
        "Counter",
        "EncodeError",
        "EventKind",
        "EventStream",
        "LeadershipEvent",
        "LockInfo",
        "LockManager",
        "LockSession",
        "LockSessionExpired",
        "Node",
        "NodeOptions",
        "NodeStatus",
        "NodeStopped",
        "NotAttached",
        "PeerAddress",
        "Replicated",
        "ReplicatedDict",
        "SessionInfo",
        "SessionLimits",
        "StateMachine",
        "SyncNode",
        "query",
        "replicated",
    }
)


def __getattr__(name: str) -> Any:
    if name in _EMBED:
        value = getattr(importlib.import_module("raftkv.embed"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'raftkv' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "BadRequest",
    "CallerError",
    "CommandFailed",
    "Consistency",
    "CorruptionError",
    "Counter",
    "DiskError",
    "EncodeError",
    "EventKind",
    "EventStream",
    "LeadershipEvent",
    "LockInfo",
    "LockManager",
    "LockSession",
    "LockSessionExpired",
    "NoQuorum",
    "Node",
    "NodeOptions",
    "NodeStatus",
    "NodeStopped",
    "NotAttached",
    "NotLeader",
    "PeerAddress",
    "PeerError",
    "ProposalDropped",
    "ProtocolError",
    "RaftkvError",
    "Replicated",
    "ReplicatedDict",
    "SessionExpired",
    "SessionInfo",
    "SessionLimits",
    "StateMachine",
    "SyncNode",
    "Timeout",
    "TooLarge",
    "WrongCluster",
    "__version__",
    "query",
    "replicated",
]
