"""raftkv clients: AsyncClient (asyncio) and Client (blocking), with one behaviour.

Both take a list of HTTP endpoints (or $RAFTKV_ENDPOINTS), find the leader, retry across
endpoints, and use client sessions so that a retried write is applied exactly once.
"""

from raftkv.client.aio import CONSISTENCIES, AsyncClient, CasResult, Consistency, Member
from raftkv.client.credentials import Credentials
from raftkv.client.endpoints import ENV_VAR, parse_endpoints, resolve_endpoints
from raftkv.client.errors import (
    Conflict,
    NotFound,
    NotSupported,
    ServerError,
    Unavailable,
    WrongEndpoint,
)
from raftkv.client.router import RetryPolicy
from raftkv.client.sync import Client
from raftkv.client.types import (
    GetResult,
    MemberStatus,
    ServerStatus,
    TxnResult,
    WatchEvent,
    WriteResult,
)
from raftkv.errors import SessionExpired
from raftkv.kv.model import KeyValue

__all__ = [
    "CONSISTENCIES",
    "ENV_VAR",
    "AsyncClient",
    "CasResult",
    "Client",
    "Conflict",
    "Consistency",
    "Credentials",
    "GetResult",
    "KeyValue",
    "Member",
    "MemberStatus",
    "NotFound",
    "NotSupported",
    "RetryPolicy",
    "ServerError",
    "ServerStatus",
    "SessionExpired",
    "TxnResult",
    "Unavailable",
    "WatchEvent",
    "WriteResult",
    "WrongEndpoint",
    "parse_endpoints",
    "resolve_endpoints",
]
