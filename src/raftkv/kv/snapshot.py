"""Snapshot format: magic, a format byte, then a msgpack SnapshotState.

Deterministic: kvs sorted by key, sessions in eviction order, so equal states give equal bytes.

Formats: 2 (written now) added Result.client_id, the last field of a cached result. 1 (read):
its cached results simply lack that field (it defaults), and its sessions are loaded as open
sessions, which they were under the rule of the entries that made them.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping

import msgspec

from raftkv.errors import ProtocolError
from raftkv.kv.model import KeyValue
from raftkv.kv.results import Result
from raftkv.kv.sessions import SessionRecord
from raftkv.packing import array_header

SNAPSHOT_MAGIC = b"RKVS"
SNAPSHOT_FORMAT = 2
_READABLE = (1, SNAPSHOT_FORMAT)


class SnapshotState(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    revision: int
    applied_index: int
    kvs: tuple[KeyValue, ...]
    sessions: tuple[SessionRecord[Result], ...]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(SnapshotState)
_HEADER = len(SNAPSHOT_MAGIC) + 1


def encode_snapshot(state: SnapshotState) -> bytes:
    buf = bytearray(SNAPSHOT_MAGIC + bytes([SNAPSHOT_FORMAT]))
    _encoder.encode_into(state, buf, _HEADER)
    return bytes(buf)


# Sort and encode this many keys per C call, so a thread encoding a large store holds the GIL
# only briefly at a time and the event loop keeps running (heartbeats stay on time).
CHUNK = 1024


class SnapshotView:
    """The store's replicated state frozen at one index: a shallow copy of the key map (its
    values are immutable) plus the session records. Taking it is cheap (a dict copy, ~10 ms
    per 200k keys); encode() does the slow part and may run in another thread. It produces
    exactly the bytes encode_snapshot gives for the same state."""

    def __init__(
        self,
        revision: int,
        applied_index: int,
        data: Mapping[str, KeyValue],
        sessions: tuple[SessionRecord[Result], ...],
    ) -> None:
        self.revision = revision
        self.applied_index = applied_index
        self._data = dict(data)
        self._sessions = sessions

    def __len__(self) -> int:
        return len(self._data)

    def encode(self) -> bytes:
        buf = bytearray()
        self.encode_into(buf)
        return bytes(buf)

    def encode_into(self, buf: bytearray) -> None:
        """Append the encoding to buf (so a wrapper around it needs no copy of its own)."""
        buf += SNAPSHOT_MAGIC + bytes([SNAPSHOT_FORMAT])
        buf += array_header(4)  # SnapshotState is array-like: its four fields in order
        _encoder.encode_into(self.revision, buf, len(buf))
        _encoder.encode_into(self.applied_index, buf, len(buf))
        buf += array_header(len(self._data))
        data = self._data
        for key in _sorted_in_chunks(list(data)):
            _encoder.encode_into(data[key], buf, len(buf))
        _encoder.encode_into(self._sessions, buf, len(buf))


def _sorted_in_chunks(keys: list[str]) -> Iterator[str]:
    runs = [sorted(keys[i : i + CHUNK]) for i in range(0, len(keys), CHUNK)]
    return heapq.merge(*runs)


def decode_snapshot(data: bytes) -> SnapshotState:
    """Raise ProtocolError (only) when data is not a snapshot this code can read."""
    if data[: len(SNAPSHOT_MAGIC)] != SNAPSHOT_MAGIC or len(data) < _HEADER:
        raise ProtocolError("not a raftkv KV snapshot (bad magic)")
    if data[len(SNAPSHOT_MAGIC)] not in _READABLE:
        fmt = data[len(SNAPSHOT_MAGIC)]
        raise ProtocolError(f"unknown KV snapshot format {fmt} (this node reads {SNAPSHOT_FORMAT})")
    try:
        state = _decoder.decode(memoryview(data)[_HEADER:])
    except (msgspec.DecodeError, ValueError) as e:  # ValueError: invalid UTF-8 in a str
        raise ProtocolError(f"undecodable KV snapshot: {e}") from None
    if state.revision < 0 or state.applied_index < 0:
        raise ProtocolError("KV snapshot has a negative revision or index")
    return state
