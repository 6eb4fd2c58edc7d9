"""raftkv: a Raft-replicated key-value store and consensus library."""

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
    Timeout,
    TooLarge,
    WrongCluster,
)

__version__ = "0.1.0"

__all__ = [
    "BadRequest",
    "CallerError",
    "CorruptionError",
    "DiskError",
    "NoQuorum",
    "NotLeader",
    "PeerError",
    "ProposalDropped",
    "ProtocolError",
    "RaftkvError",
    "Timeout",
    "TooLarge",
    "WrongCluster",
    "__version__",
]
