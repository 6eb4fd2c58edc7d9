"""Client sessions: exactly-once application of retried commands (Raft dissertation 6.3).

Each Node is a client with a random id; its commands carry (client, seq, ack). A command whose
(client, seq) was applied before is answered from the cache instead of being applied again, so
a Node may retry a command whose outcome it does not know (leader crash, lost connection).

Everything here is a pure function of the log: a session unused for ttl_entries entries is
forgotten, beyond max_sessions the least recently used goes first, and at most max_results
answers are kept per session. Every replica therefore forgets the same things at the same index.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import msgspec

from raftkv.embed.protocol import Outcome, Status


class SessionRecord(msgspec.Struct, frozen=True, array_like=True):
    """One session as stored in a snapshot."""

    client: str
    last_index: int
    low: int
    results: list[tuple[int, Outcome]]


@dataclass(slots=True)
class _State:
    last_index: int  # log index of the session's latest command
    low: int = 0  # no answer is cached, or will be accepted, for a seq < low
    results: dict[int, Outcome] = field(default_factory=dict)


class Sessions:
    def __init__(self, max_sessions: int, ttl_entries: int, max_results: int) -> None:
        self._max_sessions = max_sessions
        self._ttl = ttl_entries
        self._max_results = max_results
        self._sessions: OrderedDict[str, _State] = OrderedDict()  # least recently used first

    def __len__(self) -> int:
        return len(self._sessions)

    def expire(self, index: int) -> None:
        """Forget sessions unused for ttl entries, then the least recently used over the cap."""
        sessions = self._sessions
        while sessions:
            oldest = next(iter(sessions.values()))
            if oldest.last_index >= index - self._ttl and len(sessions) <= self._max_sessions:
                break
            sessions.popitem(last=False)

    def check(self, client: str, seq: int, ack: int, index: int) -> Outcome | None:
        """The answer to give without applying (a cached one, or expired), or None: apply."""
        state = self._sessions.get(client)
        if state is None:
            if ack > 1:  # the client had answers from us once, and we forgot it since
                return _expired(client, seq)
            return None
        state.last_index = index
        self._sessions.move_to_end(client)
        if ack > state.low:
            state.low = ack
            for old in [s for s in state.results if s < ack]:
                del state.results[old]
        cached = state.results.get(seq)
        if cached is not None:
            return msgspec.structs.replace(cached, duplicate=True)
        if seq < state.low:
            return _expired(client, seq)
        return None

    def record(self, client: str, seq: int, index: int, outcome: Outcome) -> None:
        state = self._sessions.get(client)
        if state is None:
            state = self._sessions[client] = _State(index)
        state.last_index = index
        self._sessions.move_to_end(client)
        state.results[seq] = outcome
        if len(state.results) > self._max_results:
            oldest = min(state.results)
            del state.results[oldest]
            state.low = max(state.low, oldest + 1)
        while len(self._sessions) > self._max_sessions:
            self._sessions.popitem(last=False)

    def records(self) -> list[SessionRecord]:
        return [
            SessionRecord(client, s.last_index, s.low, sorted(s.results.items()))
            for client, s in self._sessions.items()
        ]

    def load(self, records: list[SessionRecord]) -> None:
        self._sessions.clear()
        for r in records:
            self._sessions[r.client] = _State(r.last_index, r.low, dict(r.results))


def _expired(client: str, seq: int) -> Outcome:
    return Outcome(
        Status.SESSION_EXPIRED,
        error_type="SessionExpired",
        error=(
            f"session {client!r} no longer holds the answer to its command {seq}: "
            "it may or may not have been applied"
        ),
    )
