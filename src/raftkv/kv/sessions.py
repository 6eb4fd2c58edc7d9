"""Client sessions: a retried command is applied at most once (Raft dissertation 6.3).

One table for every state machine that replicates client commands (the KV store, the embedded
library's Replica), generic over R, the result it caches.

- A session is opened by a replicated command: applying it at log index i opens the session
  `session_id(i, nonce)`. The index makes the id unique in the log; the nonce (random, chosen
  by whoever proposed the entry, and stored in it) makes it unguessable, so a client cannot
  use another's session by mistake, nor one from an older timeline of a restored backup.
- A command names (client id, seq, ack). A command of an unknown session (never opened, or
  expired) is refused, never applied: its client must open a new session. A seq seen before
  is answered from the cache. ack promises the client has the answer of every seq < ack.
- Expiry is a pure function of the log, so every replica forgets the same sessions at the same
  index: a session last used at index i is forgotten once an entry after i + ttl_entries is
  applied; opening one more than max_sessions forgets the least recently used; at most
  max_results answers are kept per session (the lowest seq goes first).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import msgspec

from raftkv.errors import BadRequest

R = TypeVar("R")

MAX_NONCE_SIZE = 64
_NONCE_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Decide which retries are still recognised: every replica must use the same values."""

    max_sessions: int = 10_000
    ttl_entries: int = 1_000_000  # entries applied after a session's last use before it expires
    max_results: int = 1024  # answers cached per session (bounds its commands in flight)


class SessionRecord(
    msgspec.Struct, Generic[R], frozen=True, array_like=True, forbid_unknown_fields=True
):
    """One session as stored in a snapshot."""

    client_id: str
    last_index: int
    low: int
    results: tuple[tuple[int, R], ...]


@dataclass(frozen=True, slots=True)
class Cached(Generic[R]):
    """The command was applied before: answer with its first result."""

    result: R


@dataclass(frozen=True, slots=True)
class Refused:
    """Do not apply the command (why: for the client)."""

    why: str


def session_id(index: int, nonce: str) -> str:
    """The id of the session opened by the entry at index with nonce."""
    return f"{index}-{nonce}"


def validate_nonce(nonce: str) -> None:
    if not 0 < len(nonce) <= MAX_NONCE_SIZE or not _NONCE_CHARS.issuperset(nonce):
        raise BadRequest(f"a session nonce is 1..{MAX_NONCE_SIZE} ASCII letters and digits")


@dataclass(slots=True)
class _State(Generic[R]):
    last_index: int  # log index of the session's latest use
    low: int = 0  # no answer is cached, or will be accepted, for a seq < low
    results: dict[int, R] = field(default_factory=dict)  # seq -> first answer


class SessionTable(Generic[R]):
    def __init__(self, limits: SessionLimits) -> None:
        self._limits = limits
        # Least recently used first (every use moves a session to the end).
        self._sessions: OrderedDict[str, _State[R]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, client_id: str) -> bool:
        return client_id in self._sessions

    def open(self, index: int, nonce: str) -> str:
        """Open the session of the entry at index (nonce from the entry); its id."""
        client_id = session_id(index, nonce)
        self._sessions[client_id] = _State(index)
        self._sessions.move_to_end(client_id)
        self._evict_over_cap()
        return client_id

    def expire(self, index: int) -> None:
        """Before applying the entry at index: forget sessions unused for ttl entries."""
        sessions, oldest_kept = self._sessions, index - self._limits.ttl_entries
        while sessions and next(iter(sessions.values())).last_index < oldest_kept:
            sessions.popitem(last=False)
        self._evict_over_cap()

    def check(
        self, client_id: str, seq: int, ack: int, index: int, *, implicit_open: bool = False
    ) -> Cached[R] | Refused | None:
        """What to do with the command (client_id, seq, ack) at index: answer it from the
        cache, refuse it, or (None) apply it and then record() its result. implicit_open: the
        rule of entries written before sessions were opened through the log (an unknown
        client with ack <= 1 opens its session), kept so that old logs replay unchanged."""
        state = self._sessions.get(client_id)
        if state is None:
            if implicit_open and ack <= 1:
                return None
            return Refused(
                f"session {client_id!r} is unknown: it expired (unused for more than "
                f"{self._limits.ttl_entries} log entries, or the least recently used of more "
                f"than {self._limits.max_sessions} sessions) or was never opened. This command "
                "was not applied; open a new session"
            )
        state.last_index = index
        self._sessions.move_to_end(client_id)
        if ack > state.low:
            state.low = ack
            for old in [s for s in state.results if s < ack]:
                del state.results[old]
        cached = state.results.get(seq)
        if cached is not None:
            return Cached(cached)
        if seq < state.low:
            return Refused(
                f"session {client_id!r} no longer holds the answer of its command {seq}: "
                "it may or may not have been applied"
            )
        return None

    def record(self, client_id: str, seq: int, index: int, result: R) -> None:
        """Remember the result of the command (client_id, seq) applied at index."""
        state = self._sessions.get(client_id)
        if state is None:  # only after check(implicit_open=True)
            state = self._sessions[client_id] = _State(index)
        state.last_index = index
        self._sessions.move_to_end(client_id)
        state.results[seq] = result
        if len(state.results) > self._limits.max_results:
            oldest = min(state.results)
            del state.results[oldest]
            state.low = max(state.low, oldest + 1)
        self._evict_over_cap()

    def records(self) -> tuple[SessionRecord[R], ...]:
        """Every session, least recently used first (the order decides eviction)."""
        return tuple(
            SessionRecord(cid, s.last_index, s.low, tuple(sorted(s.results.items())))
            for cid, s in self._sessions.items()
        )

    def load(self, records: tuple[SessionRecord[R], ...]) -> None:
        self._sessions.clear()
        for r in records:
            self._sessions[r.client_id] = _State(r.last_index, r.low, dict(r.results))

    def _evict_over_cap(self) -> None:
        while len(self._sessions) > self._limits.max_sessions:
            self._sessions.popitem(last=False)
