"""Record framing shared by WAL segments and snapshot files.

Byte layout of one record (little-endian), HEADER_SIZE = 9 bytes of header:

    offset 0  u32  payload length N
    offset 4  u8   record type (a RecordType; 0 is never valid, so zero fill is not a record)
    offset 5  u32  CRC32C over the type byte followed by the payload
    offset 9  N bytes of payload (msgspec msgpack)

Invariant: a record is valid iff it lies entirely inside the buffer, its type is known and its
checksum matches. Nothing here raises on bad bytes: callers decide torn tail versus corruption.
"""

from __future__ import annotations

import enum
import re
import struct
from dataclasses import dataclass

import google_crc32c

HEADER = struct.Struct("<IBI")
HEADER_SIZE = HEADER.size
MAX_PAYLOAD = 0xFFFF_FFFF


class RecordType(enum.IntEnum):
    SEGMENT_HEADER = 1  # first record of every WAL segment
    BATCH = 2  # one save(): optional hard state + entries (atomic, replaces a suffix)
    SNAPSHOT_MARK = 3  # a snapshot became durable; the log's base moved
    SNAPSHOT_FILE = 4  # the single record of a snapshot file


_KNOWN_TYPES = frozenset(int(t) for t in RecordType)
# Any byte that could be the type byte of a valid record: used to find candidate record starts.
_TYPE_BYTE = re.compile(b"[" + b"".join(re.escape(bytes([t])) for t in sorted(_KNOWN_TYPES)) + b"]")


def checksum(rtype: int, payload: bytes | memoryview) -> int:
    return int(google_crc32c.extend(google_crc32c.value(bytes([rtype])), bytes(payload)))


def extend_checksum(crc: int, data: bytes) -> int:
    """The checksum of what crc covered followed by data (a payload checksummed in parts)."""
    return int(google_crc32c.extend(crc, data))


def frame(rtype: RecordType, payload: bytes) -> bytes:
    """Header + payload, ready to be written in one piece."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"record payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return HEADER.pack(len(payload), int(rtype), checksum(rtype, payload)) + payload


@dataclass(frozen=True, slots=True)
class Record:
    offset: int
    rtype: RecordType
    payload: bytes
    end: int  # offset just past this record


@dataclass(frozen=True, slots=True)
class Invalid:
    offset: int
    problem: str
    zero: bool  # the header bytes (as many as exist) are all zero: looks like preallocated space


def parse_at(buf: bytes, offset: int) -> Record | Invalid:
    """Parse the record starting at offset, or say why there is none."""
    head = buf[offset : offset + HEADER_SIZE]
    if not any(head):
        return Invalid(offset, "zero-filled space" if head else "end of file", zero=True)
    if len(head) < HEADER_SIZE:
        return Invalid(
            offset, f"record header cut short ({len(head)} of {HEADER_SIZE} bytes)", False
        )
    length, rtype, crc = HEADER.unpack(head)
    if rtype not in _KNOWN_TYPES:
        return Invalid(offset, f"unknown record type {rtype}", zero=False)
    end = offset + HEADER_SIZE + length
    if end > len(buf):
        return Invalid(offset, f"record of {length} bytes runs past end of file", zero=False)
    payload = buf[offset + HEADER_SIZE : end]
    if checksum(rtype, payload) != crc:
        return Invalid(offset, "checksum mismatch", zero=False)
    return Record(offset, RecordType(rtype), payload, end)


def find_valid_record(buf: bytes, start: int, stop: int, hint: int | None = None) -> int | None:
    """Offset of the first valid record beginning in [start, stop), or None.

    hint is where the next record would begin if a bad record's length field is intact; it is
    tried first because it is almost always the answer when a middle record is corrupt.
    """
    if hint is not None and start <= hint < stop and isinstance(parse_at(buf, hint), Record):
        return hint
    lo = start + 4  # the type byte sits 4 bytes into the header
    for match in _TYPE_BYTE.finditer(buf, lo, max(lo, stop + 4)):
        candidate = match.start() - 4
        if isinstance(parse_at(buf, candidate), Record):
            return candidate
    return None
