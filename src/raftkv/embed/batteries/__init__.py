"""Ready-made replicated objects: a dict, a counter, and a lock manager with fencing tokens."""

from raftkv.embed.batteries.counter import Counter
from raftkv.embed.batteries.locks import LockInfo, LockManager, LockSession, SessionInfo
from raftkv.embed.batteries.mapping import ReplicatedDict

__all__ = ["Counter", "LockInfo", "LockManager", "LockSession", "ReplicatedDict", "SessionInfo"]
