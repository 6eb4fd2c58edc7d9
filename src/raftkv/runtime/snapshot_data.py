"""What a KV server's Raft snapshot holds: the KvStore image and the address book at that index.

The core treats Snapshot.data as opaque. A node that catches up from a snapshot must also learn
where the members added before it are (their CONFIG entries were compacted away), so the book
travels with the data:

    MAGIC "RKSV" | format byte | msgpack ServerSnapshot

Data that starts with the KvStore's own magic (an image without a book) is read as such.
"""

from __future__ import annotations

import msgspec

from raftkv.errors import ProtocolError
from raftkv.kv.snapshot import SNAPSHOT_MAGIC as KV_MAGIC
from raftkv.runtime.settings import PeerAddress

MAGIC = b"RKSV"
FORMAT = 1
_HEADER = len(MAGIC) + 1


class _Address(msgspec.Struct, frozen=True, array_like=True):
    raft_host: str
    raft_port: int
    http_url: str


class _Body(msgspec.Struct, frozen=True, array_like=True):
    kv: bytes
    peers: dict[str, _Address]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Body)


def encode_server_snapshot(kv: bytes, peers: dict[str, PeerAddress]) -> bytes:
    book = {p: _Address(a.raft_host, a.raft_port, a.http_url) for p, a in sorted(peers.items())}
    return MAGIC + bytes([FORMAT]) + _encoder.encode(_Body(kv, book))


def decode_server_snapshot(data: bytes) -> tuple[bytes, dict[str, PeerAddress]]:
    """(KvStore image, address book). ProtocolError if data is neither format."""
    if data[: len(KV_MAGIC)] == KV_MAGIC:
        return data, {}
    if data[: len(MAGIC)] != MAGIC or len(data) < _HEADER:
        raise ProtocolError("not a raftkv server snapshot (bad magic)")
    if data[len(MAGIC)] != FORMAT:
        raise ProtocolError(f"unknown server snapshot format {data[len(MAGIC)]}")
    try:
        body = _decoder.decode(memoryview(data)[_HEADER:])
    except (msgspec.DecodeError, ValueError) as e:
        raise ProtocolError(f"undecodable server snapshot: {e}") from None
    peers = {p: PeerAddress(a.raft_host, a.raft_port, a.http_url) for p, a in body.peers.items()}
    return body.kv, peers
