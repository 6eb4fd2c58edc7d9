"""WAL segment files: naming, creation, and the scan that finds a segment's valid records and
any damage after them.

A segment is `wal-<seq, 10 digits>.log`: MAGIC (8 bytes), then records (see record.py), the
first of which is always a SEGMENT_HEADER; after the last record comes zero fill (the file is
preallocated) or the end of the file.

Invariants:
- a segment appears under its final name only after its magic and header record are durable
  (written to a .tmp name, fsynced, renamed, directory fsynced);
- a new segment is started only after the previous one's last record is durable, so only the
  last segment can have a torn tail: damage in any other is damage of synced data;
- a segment's space is reserved (allocate) before any record goes into it, so running out of
  space shows up as a failed allocation, before anything is written.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

from raftkv.errors import CorruptionError
from raftkv.storage import fsutil
from raftkv.storage.fs import File, FileSystem
from raftkv.storage.record import (
    HEADER_SIZE,
    Invalid,
    Record,
    RecordType,
    find_valid_record,
    frame,
    parse_at,
)

MAGIC = b"RKVWAL\x00\x01"
DATA_START = len(MAGIC)
# The next segment's space, reserved ahead of need (see LogStorage._prepare_spare); a *.tmp
# file, so a leftover one is deleted on open like any unfinished file.
SPARE_NAME = "wal-spare.tmp"
_NAME = re.compile(r"^wal-(\d{10})\.log$")


def segment_name(seq: int) -> str:
    return f"wal-{seq:010d}.log"


def list_segments(fs: FileSystem, directory: Path) -> list[tuple[int, Path]]:
    """(seq, path) of every segment file, in seq order."""
    found = []
    for name in fs.listdir(directory):
        match = _NAME.match(name)
        if match:
            found.append((int(match.group(1)), directory / name))
    return sorted(found)


def allocate(fs: FileSystem, path: Path, size: int) -> File:
    """Create path (emptied if it exists) with size bytes reserved, open for writing. On
    failure the file is removed again and the OSError propagates (ENOSPC: no room)."""
    f = fs.open(path, create=True, truncate=True)
    try:
        f.allocate(size)
    except BaseException:
        f.close()
        with contextlib.suppress(OSError):
            fs.unlink(path)
        raise
    return f


def install_segment(
    fs: FileSystem, f: File, tmp: Path, path: Path, header_payload: bytes, sync: bool
) -> int:
    """Turn the allocated file tmp (open as f) into segment `path`: write the magic and the
    header record, make them durable, rename, make the rename durable. Returns the offset where
    the next record goes. Any OSError means the segment's state is unknown."""
    first = MAGIC + frame(RecordType.SEGMENT_HEADER, header_payload)
    fsutil.write_all(f, first, 0)
    if sync:
        f.fsync()
    fs.rename(tmp, path)
    if sync:
        fs.fsync_dir(path.parent)
    return len(first)


@dataclass(frozen=True, slots=True)
class Damage:
    """Bytes after a segment's valid records that are neither a record nor zero fill."""

    offset: int  # where the valid records end: everything from here on is not replayed
    garbage_end: int  # end of the non-zero bytes from offset on
    problem: str


@dataclass(frozen=True, slots=True)
class ScannedSegment:
    path: Path
    records: list[Record]  # the valid records from the start; records[0] is the SEGMENT_HEADER
    end: int  # offset just past the last of them: where the next record goes
    damage: Damage | None  # None: zero fill or the end of the file follows them
    beyond: list[Record]  # valid records found after the damage: never replayed, read only
    # for what they attest (see recovery.py)


def scan_segment(path: Path, buf: bytes) -> ScannedSegment:
    """Read a whole segment: its valid records from the start, then, if what follows is not
    clean (zero fill or end of file), the damage and every valid record after it. Whether
    damage is a torn write or lost synced data is for the caller to decide (it knows what was
    synced). Raises CorruptionError only for a bad magic or segment header: both are durable
    before the file gets its name."""
    where = str(path)
    if buf[:DATA_START] != MAGIC:
        raise CorruptionError(f"{path.name}: not a raftkv WAL segment (bad magic)", where, 0)
    records: list[Record] = []
    offset = DATA_START
    while True:
        parsed = parse_at(buf, offset)
        if not isinstance(parsed, Record):
            invalid = parsed
            break
        records.append(parsed)
        offset = parsed.end
    if not records or records[0].rtype is not RecordType.SEGMENT_HEADER:
        raise CorruptionError(f"{path.name}: missing or damaged segment header", where, DATA_START)
    garbage_end = len(buf.rstrip(b"\0"))
    if invalid.zero and garbage_end <= offset:
        return ScannedSegment(path, records, offset, None, [])  # clean end
    damage = Damage(offset, garbage_end, _describe(invalid))
    return ScannedSegment(path, records, offset, damage, _records_after(buf, offset, garbage_end))


def _records_after(buf: bytes, offset: int, stop: int) -> list[Record]:
    """Every valid record that begins in (offset, stop), found by search past each bad one."""
    found: list[Record] = []
    at = find_valid_record(buf, offset + 1, stop, _next_record_hint(buf, offset))
    while at is not None:
        parsed = parse_at(buf, at)
        if isinstance(parsed, Record):
            found.append(parsed)
            at = parsed.end if parsed.end < stop else None
        else:
            at = find_valid_record(buf, at + 1, stop, _next_record_hint(buf, at))
    return found


def _describe(parsed: Invalid) -> str:
    return "non-zero bytes after zero fill" if parsed.zero else parsed.problem


def _next_record_hint(buf: bytes, offset: int) -> int | None:
    head = buf[offset : offset + HEADER_SIZE]
    if len(head) < HEADER_SIZE:
        return None
    return offset + HEADER_SIZE + int.from_bytes(head[:4], "little")
