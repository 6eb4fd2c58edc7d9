"""Client sessions: remember each client's recent results so a retried command applies once.

Expiry is a pure function of the log: a session last used at index i is forgotten when entry
i + ttl_entries + 1 is applied, and beyond `max_sessions` the least recently used go first.
Every replica applies the same entries, so every replica forgets the same sessions at the
same index.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import msgspec

from raftkv.kv.commands import Session
from raftkv.kv.results import Result, Status


class SessionRecord(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """One session as stored in a snapshot."""

    client_id: str
    last_index: int
    low: int
    results: tuple[tuple[int, Result], ...]


@dataclass(slots=True)
class _State:
    last_index: int  # log index of the last command that used this session
    low: int = 0  # invariant: no result is cached, or will be accepted, for a seq < low
    results: dict[int, Result] = field(default_factory=dict)  # seq -> first result


class SessionTable:
    def __init__(self, max_sessions: int, ttl_entries: int, max_results: int) -> None:
        self._max_sessions = max_sessions
        self._ttl = ttl_entries
        self._max_results = max_results
        # Ordered by last_index, oldest first (every use moves a session to the end).
        self._sessions: OrderedDict[str, _State] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, client_id: str) -> bool:
        return client_id in self._sessions

    def expire(self, index: int) -> None:
        """Forget sessions unused for ttl entries, then the least recently used over the cap."""
        while self._sessions:
            state = next(iter(self._sessions.values()))
            if state.last_index >= index - self._ttl and len(self._sessions) <= self._max_sessions:
                break
            self._sessions.popitem(last=False)

    def check(self, session: Session, index: int, revision: int) -> Result | None:
        """The answer to give without applying (cached or expired), or None: apply it."""
        state = self._sessions.get(session.client_id)
        if state is None:
            if session.ack > 1:  # the client had answers from us once: we forgot it
                return _expired(session, revision)
            return None
        state.last_index = index
        self._sessions.move_to_end(session.client_id)
        if session.ack > state.low:
            state.low = session.ack
            for seq in [s for s in state.results if s < session.ack]:
                del state.results[seq]
        cached = state.results.get(session.seq)
        if cached is not None:
            return msgspec.structs.replace(cached, duplicate=True)
        if session.seq < state.low:
            return _expired(session, revision)
        return None

    def record(self, session: Session, index: int, result: Result) -> None:
        state = self._sessions.get(session.client_id)
        if state is None:
            state = self._sessions[session.client_id] = _State(last_index=index)
        state.last_index = index
        self._sessions.move_to_end(session.client_id)
        state.results[session.seq] = result
        while len(self._sessions) > self._max_sessions:
            self._sessions.popitem(last=False)
        if len(state.results) > self._max_results:
            oldest = min(state.results)
            del state.results[oldest]
            state.low = max(state.low, oldest + 1)

    def records(self) -> tuple[SessionRecord, ...]:
        """Every session, least recently used first (the order matters for eviction)."""
        return tuple(
            SessionRecord(cid, s.last_index, s.low, tuple(sorted(s.results.items())))
            for cid, s in self._sessions.items()
        )

    def load(self, records: tuple[SessionRecord, ...]) -> None:
        self._sessions.clear()
        for r in records:
            self._sessions[r.client_id] = _State(r.last_index, r.low, dict(r.results))


def _expired(session: Session, revision: int) -> Result:
    return Result(
        status=Status.SESSION_EXPIRED,
        revision=revision,
        error=(
            f"session {session.client_id!r} no longer holds the result of seq {session.seq}; "
            "it may or may not have been applied. Start a new session."
        ),
    )
