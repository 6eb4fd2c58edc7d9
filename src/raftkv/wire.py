"""The peer codec (pure): Raft messages <-> bytes on a TCP stream.

Frame layout (big-endian), HEADER_SIZE = 12 bytes then the payload:

    magic "RK" (2) | version (1) | frame type (1) | payload length (4) | CRC32C of payload (4)

A HANDSHAKE frame's payload is a msgpack Handshake; a MESSAGES frame's payload is a msgpack
array of Messages (one write carries a whole Ready's messages for one peer). A MESSAGES payload
larger than the frame limit (an InstallSnapshot of a big state machine) is cut into a run of
CHUNK frames, sent back to back: payload = a flag byte (1 on the last chunk, else 0) + the next
piece; the decoder joins the pieces (at most max_message_size bytes) and yields the batch.

Whatever arrives, FrameDecoder either returns frames or raises ProtocolError, after which it is
poisoned: the stream position is lost and the connection must be dropped.
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
DEFAULT_MAX_MESSAGE_SIZE = 1 << 30
"""Largest message batch sent or accepted as CHUNK frames (a snapshot's size limit)."""

_HEADER = struct.Struct(">2sBBII")
HEADER_SIZE = _HEADER.size
_MAX_LENGTH_FIELD = 0xFFFF_FFFF


class FrameType(enum.IntEnum):
    HANDSHAKE = 1
    MESSAGES = 2
    CHUNK = 3


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


def encode_chunked(
    messages: Iterable[Message],
    *,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
) -> list[bytes]:
    """A batch as CHUNK frames of at most max_frame_size each (TooLarge past max_message_size).
    The frames must be written back to back on one connection."""
    payload = _encoder.encode(tuple(messages))
    if len(payload) > max_message_size:
        raise TooLarge(f"message of {len(payload)} bytes exceeds {max_message_size}")
    piece = _check_max(max_frame_size) - 1
    if piece < 1:
        raise ValueError("max_frame_size must be at least 2 to send chunks")
    view = memoryview(payload)
    frames = []
    for start in range(0, len(payload), piece):
        last = start + piece >= len(payload)
        body = (b"\x01" if last else b"\x00") + view[start : start + piece]
        frames.append(_frame(FrameType.CHUNK, body, max_frame_size))
    return frames


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

    def __init__(
        self,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        self._max = _check_max(max_frame_size)
        self._max_message = max_message_size
        self._buf = bytearray()
        self._chunks: bytearray | None = None  # pieces of a chunked batch received so far
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
                if kind is FrameType.CHUNK:
                    whole = self._chunk(payload)
                    if whole is not None:
                        frames.append(_decode_payload(FrameType.MESSAGES, whole))
                elif self._chunks is not None:
                    raise ProtocolError(f"{kind.name} frame inside a run of CHUNK frames")
                else:
                    frames.append(_decode_payload(kind, payload))
                pos = end
        except ProtocolError as e:
            self._error = e
            self._buf = bytearray()
            raise
        del buf[:pos]
        return frames

    def _chunk(self, payload: bytes) -> bytes | None:
        """Add one CHUNK; the joined batch payload once its last chunk arrived."""
        if not payload or payload[0] not in (0, 1):
            raise ProtocolError("CHUNK frame without a valid flag byte")
        chunks = self._chunks if self._chunks is not None else bytearray()
        if len(chunks) + len(payload) - 1 > self._max_message:
            raise ProtocolError(f"chunked message exceeds the limit of {self._max_message} bytes")
        chunks += memoryview(payload)[1:]
        if payload[0] == 1:
            self._chunks = None
            return bytes(chunks)
        self._chunks = chunks
        return None

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
            case FrameType.MESSAGES | FrameType.CHUNK:
                return MessageBatch(_batch_decoder.decode(payload))
    except (msgspec.DecodeError, ValueError) as e:  # ValueError: invalid UTF-8 in a str
        raise ProtocolError(f"undecodable {kind.name} payload: {e}") from None
