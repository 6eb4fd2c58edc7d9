"""raftkv as a library: replicate your own Python state machine (see docs/library.md).

from raftkv.embed import Node, Replicated, replicated, query
"""

from raftkv.embed.batteries import (
    Counter,
    LockInfo,
    LockManager,
    LockSession,
    ReplicatedDict,
    SessionInfo,
)
from raftkv.embed.batteries.locks import LockSessionExpired
from raftkv.embed.errors import CommandFailed, EncodeError, NotAttached
from raftkv.embed.events import EventKind, EventStream, LeadershipEvent
from raftkv.embed.machine import StateMachine
from raftkv.embed.node import Consistency, Node, NodeStatus
from raftkv.embed.options import NodeOptions
from raftkv.embed.replicated import Replicated, query, replicated
from raftkv.embed.sync import SyncNode
from raftkv.kv.sessions import SessionLimits
from raftkv.runtime.node import NodeStopped
from raftkv.runtime.settings import PeerAddress

__all__ = [
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
]
