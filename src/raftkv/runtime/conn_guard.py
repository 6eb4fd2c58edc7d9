"""Bounds on HTTP connections: how many at once, how long idle, how slow a request may arrive.

Every accepted connection is a GuardedProtocol wrapping the real one (http_server.py's
HttpProtocol), and stays the transport's protocol for the connection's whole life.

- Every connection counts against one Budget; who gets which is admission.py's call. At
  connect: a peer's TLS connection goes to PEER, else CLIENT while it has room (at most
  max_http_connections), else OVERFLOW (at most OVERFLOW_LIMIT, held until its first request
  says what it is). With all of those full, a new connection is answered 503
  too_many_connections (JSON) and closed at once.
- A reaper closes a connection that is not serving a request and either has received nothing
  for idle_timeout_s (idle keep-alive, or a client that connected and went silent; OVERFLOW
  connections get read_timeout_s), or has had a request arriving for more than
  read_timeout_s without its head being complete (a slow client dribbling it). While a
  request is being served (its handler runs: a long-poll, an SSE stream; or
  while its body arrives) the connection is not reaped: a body is bounded by the server
  instead (408), a stream whose client stops reading by sse.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
from collections.abc import Callable
from typing import Any, Protocol, cast, runtime_checkable

from raftkv.security.config import SecurityConfig

log = logging.getLogger("raftkv.http")

ProtocolFactory = Callable[[], asyncio.Protocol]
NodeOfCert = Callable[[Any], "str | None"]  # the member a TLS client certificate names

FORWARD_POOL = 512  # connections a follower may hold to the leader (the leader allows as many)
OVERFLOW_LIMIT = 64  # connections over max_http_connections held until their first request


class Budget(enum.Enum):
    """Which limit a connection counts against (admission.py decides)."""

    CLIENT = "client"  # max_http_connections
    STREAM = "stream"  # max_streams: serving an SSE stream (it closes when the stream ends)
    PEER = "peer"  # a member's forwarded requests: FORWARD_POOL per member
    OVERFLOW = "overflow"  # over max_http_connections, until its first request (OVERFLOW_LIMIT)


@runtime_checkable
class RequestActivity(Protocol):
    """A protocol that says whether it serves a request now, and how many it has begun."""

    def guard_state(self) -> tuple[bool, int]: ...


def _state(proto: asyncio.BaseProtocol) -> tuple[bool, int]:
    """(serving a request now, requests begun so far) of the inner protocol."""
    if isinstance(proto, RequestActivity):
        return proto.guard_state()
    return False, 0


class ConnectionGuard:
    def __init__(self, config: SecurityConfig, node_of_cert: NodeOfCert = lambda _: None) -> None:
        self.config = config
        self.node_of_cert = node_of_cert
        self.conns: set[GuardedProtocol] = set()  # every admitted connection
        self._budgets: dict[Budget, set[GuardedProtocol]] = {b: set() for b in Budget}
        self._peers: dict[str, set[GuardedProtocol]] = {}  # PEER connections per member
        self.refused = 0
        self.reaped = 0
        self._task: asyncio.Task[None] | None = None

    def count(self, budget: Budget) -> int:
        return len(self._budgets[budget])

    def capacity(self, budget: Budget) -> int:
        match budget:
            case Budget.CLIENT:
                return self.config.max_http_connections
            case Budget.STREAM:
                return self.config.max_streams
            case Budget.OVERFLOW:
                return OVERFLOW_LIMIT
            case Budget.PEER:
                return FORWARD_POOL  # per member
        raise AssertionError(budget)

    def move(self, conn: GuardedProtocol, budget: Budget, node: str | None = None) -> bool:
        """Count conn against budget (PEER: node's pool) if it has room; False if not."""
        if conn.budget is budget and conn.node == node:
            return True
        if budget is Budget.PEER:
            if node is None:
                return False
            members = self._peers.get(node, set())
        else:
            members = self._budgets[budget]
        if len(members) >= self.capacity(budget):
            return False
        self.leave(conn)
        conn.budget, conn.node = budget, node
        self._budgets[budget].add(conn)
        if budget is Budget.PEER and node is not None:
            self._peers.setdefault(node, set()).add(conn)
        return True

    def leave(self, conn: GuardedProtocol) -> None:
        if conn.budget is None:
            return
        self._budgets[conn.budget].discard(conn)
        if conn.node is not None:
            pool = self._peers.get(conn.node)
            if pool is not None:
                pool.discard(conn)
                if not pool:
                    del self._peers[conn.node]
        conn.budget, conn.node = None, None

    def wrap(self, inner: ProtocolFactory) -> ProtocolFactory:
        def factory() -> asyncio.Protocol:
            return GuardedProtocol(self, inner())

        return factory

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._reap(), name="http-conn-guard")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def period(self) -> float:
        c = self.config
        return min(1.0, max(0.05, min(c.idle_timeout_s, c.read_timeout_s) / 4))

    async def _reap(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.period)
            now = loop.time()
            for conn in list(self.conns):
                why = conn.overdue(now)
                if why is not None:
                    self.reaped += 1
                    log.info("closing HTTP connection from %s: %s", conn.peer, why)
                    conn.close()


class GuardedProtocol(asyncio.Protocol):
    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.refused = False
        self.budget: Budget | None = None  # None until admitted, and once closed
        self.node: str | None = None  # the member whose PEER connection this is
        self.peer = "?"
        self.last_rx = 0.0
        self.pending_since: float | None = None  # first byte of a request not yet begun
        self.seen_requests = 0

    # --- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        guard = self.guard
        node = guard.node_of_cert(transport.get_extra_info("peercert"))
        if not (
            (node is not None and guard.move(self, Budget.PEER, node))
            or guard.move(self, Budget.CLIENT)
            or guard.move(self, Budget.OVERFLOW)
        ):
            self.refused = True
            guard.refused += 1
            self.transport.write(_too_many(guard.config.max_http_connections))
            self.transport.close()
            return
        guard.conns.add(self)
        self.last_rx = asyncio.get_running_loop().time()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        now = asyncio.get_running_loop().time()
        self.last_rx = now
        if self.pending_since is None:
            self.pending_since = now
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self.refused:
            return None
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.conns.discard(self)
        self.guard.leave(self)
        if not self.refused:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    # --- reaping ------------------------------------------------------------------------

    def overdue(self, now: float) -> str | None:
        """Why this connection should be closed now, or None."""
        serving, begun = _state(self.inner)
        if serving or begun != self.seen_requests:
            self.seen_requests = begun
            self.pending_since = None
            return None
        cfg = self.guard.config
        if self.pending_since is not None and now - self.pending_since > cfg.read_timeout_s:
            return f"request not complete after {cfg.read_timeout_s:g}s (slow client)"
        idle = cfg.read_timeout_s if self.budget is Budget.OVERFLOW else cfg.idle_timeout_s
        if now - self.last_rx > idle:
            return f"idle for {idle:g}s"
        return None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def guarded(transport: asyncio.BaseTransport | None) -> GuardedProtocol | None:
    """The guard of the connection on transport (None if it has none)."""
    proto = None if transport is None else transport.get_protocol()
    return proto if isinstance(proto, GuardedProtocol) else None


def too_many_message(limit: int) -> str:
    return (
        f"this node serves at most {limit} client HTTP connections at once "
        "(--max-connections); retry"
    )


def _too_many(limit: int) -> bytes:
    body = json.dumps({"error": "too_many_connections", "message": too_many_message(limit)})
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body.encode()
