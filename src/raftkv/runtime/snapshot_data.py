"""What a KV server's Raft snapshot holds: the KvStore image and the address book at that index.

The core treats Snapshot.data as opaque. A node that catches up from a snapshot must also learn
where the members added before it are (their CONFIG entries were compacted away), so the book
travels with the data:

    MAGIC "RKSV" | format byte | msgpack ServerSnapshot

Data that starts with the KvStore's own magic (an image without a book) is read as such.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import msgspec

from raftkv.errors import ProtocolError
from raftkv.kv.snapshot import SNAPSHOT_MAGIC as KV_MAGIC
from raftkv.packing import LONGEST_BIN_HEADER, array_header, bin_header
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
    return bytes(server_snapshot_buffer(lambda buf: buf.extend(kv), peers))


# Room left in front of the KV image for everything that precedes it (the magic, the format,
# the array header and the longest bin header): it is written once the image's length is known.
_ROOM = _HEADER + 1 + LONGEST_BIN_HEADER


def server_snapshot_buffer(
    write_kv: Callable[[bytearray], None], peers: dict[str, PeerAddress]
) -> memoryview:
    """What encode_server_snapshot(image, peers) returns, in a buffer, for the image write_kv
    appends to a buffer: the image is encoded in place, not copied (a copy of a large store
    holds the GIL for its whole length, stalling the event loop)."""
    book = {p: _Address(a.raft_host, a.raft_port, a.http_url) for p, a in sorted(peers.items())}
    buf = bytearray(_ROOM)
    write_kv(buf)
    head = MAGIC + bytes([FORMAT]) + array_header(2) + bin_header(len(buf) - _ROOM)
    start = _ROOM - len(head)
    buf[start:_ROOM] = head
    _encoder.encode_into(book, buf, len(buf))
    return memoryview(buf)[start:]


def copy_out(view: memoryview) -> bytes:
    """bytes(view), without holding the GIL for the copy where the OS allows: the kernel
    copies it into a memory file and back (os.write and os.pread release the GIL), so the
    event loop keeps running meanwhile. bytes(view) of 80 MB stalls every other thread for
    about 100 ms; this way none waits more than a few ms (and the copy takes 3x longer)."""
    if not hasattr(os, "memfd_create") or not view.nbytes:
        return bytes(view)
    fd = os.memfd_create("raftkv-snapshot", os.MFD_CLOEXEC)
    try:
        written = 0
        while written < view.nbytes:
            written += os.write(fd, view[written:])
        data = os.pread(fd, view.nbytes, 0)
    finally:
        os.close(fd)
    return data if len(data) == view.nbytes else bytes(view)


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
