"""Which HTTP connection budget a request uses, decided once its head is in (http_server.py).

Budgets (conn_guard.Budget), so that no kind of traffic can starve another:

- CLIENT (--max-connections, 1024): ordinary client requests.
- STREAM (--max-streams, 1024): SSE streams, GET /v1/watch and /v1/events. A stream's
  connection leaves the client budget while it streams and closes when the stream ends; over
  the budget the stream is refused with 503 too_many_streams.
- PEER (FORWARD_POOL per member): requests forwarded by another node (writes and linearizable
  reads sent to a follower), so the cluster keeps taking writes however many clients the
  leader holds. A connection is a peer's when, with TLS, its client certificate is the node
  certificate of a member (checked at connect); without TLS, when a request names a member in
  X-Raftkv-Forwarded-By and, with bearer tokens on, carries in X-Raftkv-Peer-Key the key every
  node derives from the shared token table (forward_key). With neither TLS nor tokens nothing
  is authenticated and the header alone is believed. Belonging to PEER grants no permission:
  a forwarded request is authorized like any other (http_auth.py).
- OVERFLOW (OVERFLOW_LIMIT): a connection that arrives when CLIENT is full is held until its
  first request (at most read_timeout_s): /healthz is answered (so health checks always get
  an answer), a stream or a peer's request moves to its own budget, anything else gets 503
  too_many_connections, and the connection is closed after its one answer.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from raftkv.errors import TooManyStreams
from raftkv.runtime.conn_guard import Budget, GuardedProtocol
from raftkv.runtime.settings import NodeSettings
from raftkv.security.tls import cert_identity

HOP_HEADER = "X-Raftkv-Forwarded-By"  # the member forwarding a request (forward.py)
PEER_KEY_HEADER = "X-Raftkv-Peer-Key"  # its proof without TLS, with tokens (forward_key)
STREAM_ROUTES = frozenset(("/v1/watch", "/v1/events"))


class Traffic(enum.Enum):
    HEALTH = "health"
    STREAM = "stream"
    OTHER = "other"


def traffic_of(method: str, path: str) -> Traffic:
    if path == "/healthz":
        return Traffic.HEALTH
    if method == "GET" and path in STREAM_ROUTES:
        return Traffic.STREAM
    return Traffic.OTHER


def forward_key(settings: NodeSettings) -> str | None:
    """The X-Raftkv-Peer-Key of this cluster's forwarded requests: with tokens and without
    TLS, an HMAC of the cluster id keyed by the token table (the same on every node, never a
    token itself); None with TLS (the node certificate says who forwards) or with no tokens."""
    security = settings.security
    if security.tls is not None or security.tokens is None:
        return None
    material = b"".join(sorted(security.tokens.by_digest))
    msg = b"raftkv forwarded request, cluster " + settings.cluster_id.encode()
    return hmac.new(material, msg, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class PeerPolicy:
    """How this node recognizes a connection or request of a peer (see the module doc)."""

    tls: bool
    key: str | None  # what PEER_KEY_HEADER must hold without TLS (None: nothing)
    is_member: Callable[[str], bool]  # a current member other than this node

    @classmethod
    def of(cls, settings: NodeSettings, is_member: Callable[[str], bool]) -> PeerPolicy:
        return cls(settings.security.tls is not None, forward_key(settings), is_member)

    def node_of_cert(self, peercert: Any) -> str | None:
        """The member whose node certificate the (verified) TLS connection presented."""
        if not self.tls:
            return None
        ident = cert_identity(peercert)
        if ident is None or not ident.is_node or not self.is_member(ident.name):
            return None
        return ident.name

    def forwarded_by(self, hop: str | None, key: str | None) -> str | None:
        """The member a request was forwarded by, if its headers prove it (never with TLS:
        there only the certificate counts)."""
        if hop is None or self.tls:
            return None
        if self.key is not None and (key is None or not hmac.compare_digest(key, self.key)):
            return None
        return hop if self.is_member(hop) else None


def admit(
    policy: PeerPolicy,
    conn: GuardedProtocol | None,
    traffic: Traffic,
    hop: str | None,
    key: str | None,
) -> bool:
    """Whether to serve a request on conn (False: 503 too_many_connections, then close). A
    peer's forwarded request moves its connection to the PEER budget."""
    if conn is None:  # not under a guard
        return True
    if hop is not None and conn.budget is not Budget.PEER:
        node = policy.forwarded_by(hop, key)
        if node is not None:
            conn.guard.move(conn, Budget.PEER, node)
    return conn.budget is not Budget.OVERFLOW or traffic is not Traffic.OTHER


def take_stream_slot(conn: GuardedProtocol | None) -> None:
    """Move conn to the STREAM budget, or TooManyStreams."""
    if conn is None or conn.guard.move(conn, Budget.STREAM):
        return
    limit = conn.guard.config.max_streams
    raise TooManyStreams(
        f"this node serves at most {limit} SSE streams (watches and event streams) at once "
        "(--max-streams); close one, watch several prefixes on one stream "
        "(GET /v1/watch?prefix=a&prefix=b), or retry"
    )
