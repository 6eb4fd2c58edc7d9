"""WAL segment files: naming, creation, and the scan that tells a torn tail from corruption.

A segment is `wal-<seq, 10 digits>.log`: MAGIC (8 bytes), then records (see record.py), the
first of which is always a SEGMENT_HEADER; after the last record comes zero fill (the file is
preallocated) or the end of the file.

Invariants:
- a segment appears under its final name only after its magic and header record are durable
  (written to a .tmp name, fsynced, renamed, directory fsynced);
- a new segment is started only after the previous one's last record is durable, so only the
  last segment can have a torn tail;
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
class TornTail:
    offset: int  # where valid data ends; everything from here on is discarded
    garbage_end: int  # end of the non-zero bytes that were discarded
    problem: str


@dataclass(frozen=True, slots=True)
class ScannedSegment:
    path: Path
    records: list[Record]  # records[0] is the SEGMENT_HEADER
    end: int  # offset just past the last valid record: where the next one goes
    torn: TornTail | None


def scan_segment(path: Path, buf: bytes, is_last: bool) -> ScannedSegment:
    """Validate a whole segment. Raises CorruptionError (with path and offset) unless every
    record is valid, except that in the last segment an invalid record with no valid record
    anywhere after it is a torn write: it is reported, not raised."""
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
        # The header was durable before the file got its name: a bad one is corruption.
        raise CorruptionError(f"{path.name}: missing or damaged segment header", where, DATA_START)
    garbage_end = len(buf.rstrip(b"\0"))
    if invalid.zero and garbage_end <= offset:
        return ScannedSegment(path, records, offset, None)  # clean end: zero fill or EOF
    problem = _describe(invalid)
    if not is_last:
        raise CorruptionError(
            f"{path.name}: {problem} at offset {offset} in a segment that is not the last",
            where,
            offset,
        )
    hint = _next_record_hint(buf, offset)
    follower = find_valid_record(buf, offset + 1, garbage_end, hint)
    if follower is not None:
        raise CorruptionError(
            f"{path.name}: {problem} at offset {offset}, but a valid record follows at "
            f"offset {follower}: this is corruption, not a torn write",
            where,
            offset,
        )
    return ScannedSegment(path, records, offset, TornTail(offset, garbage_end, problem))


def _describe(parsed: Invalid) -> str:
    return "non-zero bytes after zero fill" if parsed.zero else parsed.problem


def _next_record_hint(buf: bytes, offset: int) -> int | None:
    head = buf[offset : offset + HEADER_SIZE]
    if len(head) < HEADER_SIZE:
        return None
    return offset + HEADER_SIZE + int.from_bytes(head[:4], "little")
