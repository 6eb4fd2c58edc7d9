"""Snapshot format: magic, a format byte, then a msgpack SnapshotState.

Deterministic: kvs sorted by key, sessions in eviction order, so equal states give equal bytes.

Formats: 2 (written now) added Result.client_id, the last field of a cached result. 1 (read):
its cached results simply lack that field (it defaults), and its sessions are loaded as open
sessions, which they were under the rule of the entries that made them.
"""

from __future__ import annotations

import msgspec

from raftkv.errors import ProtocolError
from raftkv.kv.model import KeyValue
from raftkv.kv.results import Result
from raftkv.kv.sessions import SessionRecord

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
