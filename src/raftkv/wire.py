"""The peer codec (pure): Raft messages <-> bytes on a TCP stream.

Frame layout (big-endian), HEADER_SIZE = 12 bytes then the payload:

    magic "RK" (2) | version (1) | frame type (1) | payload length (4) | CRC32C of payload (4)

A HANDSHAKE frame's payload is a msgpack Handshake; a MESSAGES frame's payload is a msgpack
array of Messages (one write carries a whole Ready's messages for one peer). Whatever arrives,
FrameDecoder either returns frames or raises ProtocolError, after which it is poisoned: the
stream position is lost and the connection must be dropped.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable
from dataclasses import dataclass

import google_crc32c
import msgspec

from raftkv.core.messages import Message
from raftkv.errors import ProtocolError, TooLarge, WrongCluster

MAGIC = b"RK"
PROTOCOL_VERSION = 1
DEFAULT_MAX_FRAME_SIZE = 64 * 1024 * 1024
"""Largest payload accepted or produced, in bytes (the length field caps it at 4 GiB - 1)."""

_HEADER = struct.Struct(">2sBBII")
HEADER_SIZE = _HEADER.size
_MAX_LENGTH_FIELD = 0xFFFF_FFFF


class FrameType(enum.IntEnum):
    HANDSHAKE = 1
    MESSAGES = 2


class Handshake(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """The first frame each side sends: who I am, in which cluster, speaking which version."""

    cluster_id: str
    node_id: str
    protocol_version: int


@dataclass(frozen=True, slots=True)
class MessageBatch:
    messages: tuple[Message, ...]


Frame = Handshake | MessageBatch

_encoder = msgspec.msgpack.Encoder()
_handshake_decoder = msgspec.msgpack.Decoder(Handshake)
_batch_decoder = msgspec.msgpack.Decoder(tuple[Message, ...])


def _crc(payload: bytes) -> int:
    return int(google_crc32c.value(payload))


def _check_max(max_frame_size: int) -> int:
    if not 0 < max_frame_size <= _MAX_LENGTH_FIELD:
        raise ValueError(f"max_frame_size must be 1..{_MAX_LENGTH_FIELD}, got {max_frame_size}")
    return max_frame_size


def _frame(kind: FrameType, payload: bytes, max_frame_size: int) -> bytes:
    if len(payload) > _check_max(max_frame_size):
        raise TooLarge(f"{kind.name} frame of {len(payload)} bytes exceeds {max_frame_size}")
    header = _HEADER.pack(MAGIC, PROTOCOL_VERSION, kind, len(payload), _crc(payload))
    return header + payload


def encode_handshake(
    cluster_id: str, node_id: str, *, protocol_version: int = PROTOCOL_VERSION
) -> bytes:
    payload = _encoder.encode(Handshake(cluster_id, node_id, protocol_version))
    return _frame(FrameType.HANDSHAKE, payload, DEFAULT_MAX_FRAME_SIZE)


def encode_messages(
    messages: Iterable[Message], *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
) -> bytes:
    """One MESSAGES frame. TooLarge if over max_frame_size: split the batch, or the snapshot."""
    return _frame(FrameType.MESSAGES, _encoder.encode(tuple(messages)), max_frame_size)


def check_handshake(handshake: Handshake, cluster_id: str, node_id: str | None = None) -> Handshake:
    """Accept a peer's handshake, or raise WrongCluster / ProtocolError (drop the connection)."""
    if handshake.protocol_version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"peer {handshake.node_id!r} speaks protocol version {handshake.protocol_version}, "
            f"this node speaks {PROTOCOL_VERSION}"
        )
    if handshake.cluster_id != cluster_id:
        raise WrongCluster(
            f"peer {handshake.node_id!r} belongs to cluster {handshake.cluster_id!r}, "
            f"not {cluster_id!r}"
        )
    if not handshake.node_id:
        raise ProtocolError("peer sent an empty node id")
    if node_id is not None and handshake.node_id != node_id:
        raise ProtocolError(f"expected peer {node_id!r}, but {handshake.node_id!r} answered")
    return handshake


class FrameDecoder:
    """Incremental decoder: feed bytes as they arrive, at any split, and get whole frames."""

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self._max = _check_max(max_frame_size)
        self._buf = bytearray()
        self._error: ProtocolError | None = None  # set once; every later feed raises

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole frame."""
        return len(self._buf)

    @property
    def error(self) -> ProtocolError | None:
        return self._error

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Frames completed by data, in order. Raises ProtocolError on any invalid input."""
        if self._error is not None:
            raise ProtocolError(f"connection already failed: {self._error}")
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        pos = 0
        try:
            while len(buf) - pos >= HEADER_SIZE:
                kind, length, crc = self._header(buf, pos)  # checked before any payload waits
                end = pos + HEADER_SIZE + length
                if len(buf) < end:
                    break
                payload = bytes(buf[pos + HEADER_SIZE : end])
                if _crc(payload) != crc:
                    raise ProtocolError(f"{kind.name} frame checksum mismatch ({length} bytes)")
                frames.append(_decode_payload(kind, payload))
                pos = end
        except ProtocolError as e:
            self._error = e
            self._buf = bytearray()
            raise
        del buf[:pos]
        return frames

    def _header(self, buf: bytearray, pos: int) -> tuple[FrameType, int, int]:
        magic, version, kind, length, crc = _HEADER.unpack_from(buf, pos)
        if magic != MAGIC:
            raise ProtocolError(f"bad magic {bytes(magic)!r}: not a raftkv peer stream")
        if version != PROTOCOL_VERSION:
            raise ProtocolError(
                f"unknown protocol version {version} (this node speaks {PROTOCOL_VERSION})"
            )
        try:
            frame_type = FrameType(kind)
        except ValueError:
            raise ProtocolError(f"unknown frame type {kind}") from None
        if length > self._max:
            raise ProtocolError(f"frame of {length} bytes exceeds the limit of {self._max}")
        return frame_type, length, crc


def _decode_payload(kind: FrameType, payload: bytes) -> Frame:
    try:
        match kind:
            case FrameType.HANDSHAKE:
                return _handshake_decoder.decode(payload)
            case FrameType.MESSAGES:
                return MessageBatch(_batch_decoder.decode(payload))
    except (msgspec.DecodeError, ValueError) as e:  # ValueError: invalid UTF-8 in a str
        raise ProtocolError(f"undecodable {kind.name} payload: {e}") from None
