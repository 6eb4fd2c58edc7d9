"""A replicated lock manager: locks with fencing tokens, held by sessions that expire.

Fencing tokens: every successful acquire of a lock gets a token one higher than any token that
lock ever had (tokens survive release and expiry). A resource that remembers the highest token
it has seen and refuses smaller ones is safe even from a holder that paused past its expiry.

Session expiry, and why it is deterministic: apply never reads a clock. The leader measures
time with its own monotonic clock and *proposes* expiry: a session whose renewal count has not
changed for ttl seconds (counted from when this leader first saw that count, so a new leader
grants every session a full ttl) gets an expire(session, renewals) command. Applying it drops
the session and its locks only if the renewal count is still the same (a keepalive committed
in between wins). Expiry is thus an entry in the log, applied identically everywhere; no
clock synchronisation between machines is assumed, only bounded clock-rate drift.

A holder must stop trusting its session ttl seconds after it *sent* its last successful
keepalive (LockSession.valid does this): the leader starts counting later than that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import Any

import msgspec

from raftkv.embed.errors import CommandFailed
from raftkv.embed.node import Node
from raftkv.embed.replicated import Replicated, query, replicated
from raftkv.errors import BadRequest, CallerError, RaftkvError

log = logging.getLogger("raftkv.embed.locks")


class SessionInfo(msgspec.Struct):
    ttl_ms: int
    renewals: int = 0  # keepalives applied: what an expire command must match
    label: str = ""


class LockInfo(msgspec.Struct, frozen=True):
    name: str
    session: str
    token: int


class SessionGone(Exception):
    """Raised inside apply: the session expired or was closed."""


class LockSessionExpired(CallerError):
    """The lock session expired (or was closed): its locks are gone. Open a new one."""


class LockManager(Replicated):
    sessions: dict[str, SessionInfo]
    locks: dict[str, LockInfo]
    tokens: dict[str, int]  # the last token each lock ever handed out
    next_session: int

    def __init__(self, *, reap_interval_s: float = 0.1) -> None:
        self.sessions = {}
        self.locks = {}
        self.tokens = {}
        self.next_session = 0
        self._reap_interval = reap_interval_s
        self._reaper: asyncio.Task[None] | None = None

    # --- replicated commands --------------------------------------------------------------

    @replicated
    def open_session(self, ttl_s: float, label: str = "") -> str:
        if not 0 < ttl_s <= 86_400:
            raise BadRequest(f"session ttl must be in (0, 86400] seconds, got {ttl_s}")
        self.next_session += 1
        session = f"s{self.next_session}"
        self.sessions[session] = SessionInfo(round(ttl_s * 1000), 0, label)
        return session

    @replicated
    def keepalive(self, session: str) -> bool:
        """Renew session; False if it is gone (expired or closed)."""
        info = self.sessions.get(session)
        if info is None:
            return False
        info.renewals += 1
        return True

    @replicated
    def close_session(self, session: str) -> list[str]:
        """End session; the locks it released."""
        return self._drop(session)

    @replicated
    def acquire(self, lock: str, session: str) -> int:
        """The fencing token if session now holds lock (again, if it held it), else 0."""
        if session not in self.sessions:
            raise SessionGone(f"session {session} expired or was closed")
        held = self.locks.get(lock)
        if held is not None:
            return held.token if held.session == session else 0
        token = self.tokens.get(lock, 0) + 1
        self.tokens[lock] = token
        self.locks[lock] = LockInfo(lock, session, token)
        return token

    @replicated
    def release(self, lock: str, session: str, token: int) -> bool:
        """Release lock if session holds it with token; whether it did."""
        held = self.locks.get(lock)
        if held is None or held.session != session or held.token != token:
            return False
        del self.locks[lock]
        return True

    @replicated
    def expire(self, session: str, renewals: int) -> list[str]:
        """Proposed by the leader: end session if it was not renewed since `renewals`."""
        info = self.sessions.get(session)
        if info is None or info.renewals != renewals:
            return []
        return self._drop(session)

    def _drop(self, session: str) -> list[str]:
        if self.sessions.pop(session, None) is None:
            return []
        released = sorted(name for name, held in self.locks.items() if held.session == session)
        for name in released:
            del self.locks[name]
        return released

    # --- reads ----------------------------------------------------------------------------

    @query
    def holder(self, lock: str) -> LockInfo | None:
        return self.locks.get(lock)

    @query
    def last_token(self, lock: str) -> int:
        return self.tokens.get(lock, 0)

    @query
    def session_info(self, session: str) -> SessionInfo | None:
        return self.sessions.get(session)

    # --- the leader's session reaper ------------------------------------------------------

    async def on_node_start(self, node: Node[Any]) -> None:
        self._reaper = asyncio.create_task(self._reap(node), name=f"lock-reaper-{node.id}")

    async def on_node_stop(self, node: Node[Any]) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None

    async def _reap(self, node: Node[Any]) -> None:
        loop = asyncio.get_running_loop()
        seen: dict[str, tuple[int, float]] = {}  # session -> (renewals, first seen at)
        while True:
            await asyncio.sleep(self._reap_interval)
            if not node.is_leader:
                seen.clear()  # whoever leads next starts every session's clock afresh
                continue
            now = loop.time()
            due: list[tuple[str, int]] = []
            for session, info in self.sessions.items():
                first = seen.get(session)
                if first is None or first[0] != info.renewals:
                    seen[session] = (info.renewals, now)
                elif now - first[1] >= info.ttl_ms / 1000:
                    due.append((session, info.renewals))
            for gone in seen.keys() - self.sessions.keys():
                del seen[gone]
            for session, renewals in due:
                try:
                    released = await self.expire(session, renewals)
                except RaftkvError as e:
                    log.debug("%s: expiring %s failed (retried): %s", node.id, session, e)
                    continue
                log.info("%s: session %s expired, released %s", node.id, session, released)

    # --- the client side ------------------------------------------------------------------

    def session(self, ttl_s: float, label: str = "") -> LockSession:
        """A session to hold locks with: `async with locks.session(10) as s: ...`."""
        return LockSession(self, ttl_s, label)


class LockSession:
    """Opens a session, renews it every ttl/3 in the background, closes it on exit."""

    def __init__(self, locks: LockManager, ttl_s: float, label: str = "") -> None:
        self._locks = locks
        self.ttl_s = ttl_s
        self.label = label
        self.id: str | None = None
        self.held: dict[str, int] = {}  # lock -> fencing token
        self._valid_until = 0.0
        self._lost = False
        self._keeper: asyncio.Task[None] | None = None

    @property
    def valid(self) -> bool:
        """Whether this holder may still act on its locks (its own conservative view)."""
        loop = asyncio.get_running_loop()
        return self.id is not None and not self._lost and loop.time() < self._valid_until

    async def open(self) -> str:
        loop = asyncio.get_running_loop()
        sent = loop.time()
        self.id = await self._locks.open_session(self.ttl_s, self.label)
        self._valid_until = sent + self.ttl_s
        self._keeper = asyncio.create_task(self._keep_alive(), name=f"keepalive-{self.id}")
        return self.id

    async def close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
        if self.id is not None and not self._lost:
            with contextlib.suppress(RaftkvError):
                await self._locks.close_session(self.id)
        self._lost = True
        self.held.clear()

    async def __aenter__(self) -> LockSession:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def acquire(self, lock: str, *, wait_s: float = 0.0) -> int:
        """The fencing token once held; 0 if another session still holds it after wait_s.
        LockSessionExpired if this session is gone."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            token = await self._call_acquire(lock)
            if token:
                self.held[lock] = token
                return token
            if loop.time() >= deadline:
                return 0
            await asyncio.sleep(min(0.05, max(0.0, deadline - loop.time())))

    async def release(self, lock: str) -> bool:
        token = self.held.pop(lock, None)
        if token is None or self.id is None:
            return False
        return await self._locks.release(lock, self.id, token)

    async def _call_acquire(self, lock: str) -> int:
        if self.id is None or self._lost:
            raise LockSessionExpired("the lock session is not open")
        try:
            return await self._locks.acquire(lock, self.id)
        except CommandFailed as e:
            if e.error_type == SessionGone.__name__:
                self._lost = True
                raise LockSessionExpired(str(e)) from None
            raise

    async def _keep_alive(self) -> None:
        loop = asyncio.get_running_loop()
        assert self.id is not None
        while not self._lost:
            await asyncio.sleep(self.ttl_s / 3)
            sent = loop.time()
            try:
                alive = await self._locks.keepalive(self.id)
            except RaftkvError as e:
                log.debug("keepalive of %s failed (retrying): %s", self.id, e)
                continue
            if not alive:
                self._lost = True
                self.held.clear()
                log.warning("lock session %s expired", self.id)
                return
            self._valid_until = sent + self.ttl_s
