"""A client session: the numbering that lets the server apply a retried write exactly once.

Every write takes the next seq and keeps it across all its retries. The server caches the
result per (client id, seq), so a retry of a write that already committed gets the cached
answer instead of applying twice (Raft dissertation 6.3). `ack` tells the server which results
it may forget: every seq below it has been answered (or given up on) here.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

CLIENT_HEADER = "X-Raftkv-Client"
SEQ_HEADER = "X-Raftkv-Seq"
ACK_HEADER = "X-Raftkv-Ack"


def new_client_id() -> str:
    return "c-" + secrets.token_hex(8)


@dataclass(slots=True)
class ClientSession:
    client_id: str = field(default_factory=new_client_id)
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
