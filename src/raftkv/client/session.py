"""A client session: the numbering that lets the server apply a retried write exactly once.

The session is opened through the log (POST /v1/sessions for the KV server, an OpenSessionEntry
for the embedded library): the id is the log's. Every write takes the next seq and keeps
it across all its retries. The server caches the result per (client id, seq), so a retry of a
write that already committed gets the cached answer instead of applying twice (Raft
dissertation 6.3). `ack` tells the server which results it may forget: every seq below it has
been answered (or given up on) here.

A server forgets a session after a while (it expires): a write naming it is then refused, not
applied. SessionKeeper opens a new session when told, once for all the writes that learn it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from raftkv.errors import Timeout

CLIENT_HEADER = "X-Raftkv-Client"
SEQ_HEADER = "X-Raftkv-Seq"
ACK_HEADER = "X-Raftkv-Ack"


@dataclass(slots=True)
class ClientSession:
    client_id: str  # as the log assigned it
    _next_seq: int = 1
    # Invariant: the seqs handed out by begin() and not yet passed to finish().
    _in_flight: set[int] = field(default_factory=set)

    def begin(self) -> int:
        """A fresh seq for one write; call finish(seq) once it is answered or abandoned."""
        seq = self._next_seq
        self._next_seq += 1
        self._in_flight.add(seq)
        return seq

    def finish(self, seq: int) -> None:
        self._in_flight.discard(seq)

    @property
    def ack(self) -> int:
        """The lowest seq without an answer (every smaller seq is settled)."""
        return min(self._in_flight) if self._in_flight else self._next_seq

    def headers(self, seq: int) -> dict[str, str]:
        return {
            CLIENT_HEADER: self.client_id,
            SEQ_HEADER: str(seq),
            ACK_HEADER: str(self.ack),
        }


# (timeout, what the session is for) -> the client id of a session opened through the log.
SessionOpener = Callable[[float, str], Awaitable[str]]


class SessionKeeper:
    """The current session: opened before the first write, reopened when one expires.
    Concurrent writers share each open (one log entry, not one per writer); when an open
    fails, the next writer to need a session tries its own."""

    def __init__(self, open_session: SessionOpener) -> None:
        self._open = open_session
        self._lock = asyncio.Lock()
        self.session: ClientSession | None = None

    async def current(self, timeout: float, what: str) -> ClientSession:
        """The session to number a write in (opened first if there is none)."""
        session = self.session
        if session is not None:
            return session
        return await self._replace(None, timeout, what)

    async def renew(self, expired: ClientSession, timeout: float, what: str) -> ClientSession:
        """A session to use instead of expired (which the server said it does not know)."""
        return await self._replace(expired, timeout, what)

    async def _replace(self, old: ClientSession | None, timeout: float, what: str) -> ClientSession:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            async with asyncio.timeout(timeout):
                await self._lock.acquire()
        except TimeoutError:
            raise Timeout(
                f"{what}: no client session within {timeout:g}s (another request was opening "
                "one); nothing was sent"
            ) from None
        try:
            if self.session is None or self.session is old:
                remaining = max(deadline - loop.time(), 0.001)
                self.session = ClientSession(await self._open(remaining, what))
            return self.session
        finally:
            self._lock.release()
