"""Snapshot files: `snap-<index, 20 digits>.snap` = MAGIC (8 bytes) + one SNAPSHOT_FILE record.

Invariant: a snapshot file appears under its final name only when complete and durable (written
as .tmp, fsynced, renamed, directory fsynced), so a named file that fails its checksum is
corruption, never a torn write. The newest file is the one recovery uses; older ones are kept
(last N) for operators, and are the first to go when the disk is full.

A write that fails before the rename (ENOSPC, EIO on the new file's write or fsync) changes
nothing: its .tmp file is removed and DiskError (DiskFull for lack of space) is raised, so the
node can keep serving from its WAL and try again later. A failed write or sync is never retried
on the same file.

A large file is written and made durable SYNC_EVERY bytes at a time, so the WAL's syncs, which
share the disk, never wait behind a whole snapshot; and it is written from its parts, so the
snapshot's data is never copied (a copy of a large store holds the GIL and stalls the loop).
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import msgspec

from raftkv.core.types import Snapshot
from raftkv.errors import CorruptionError, DiskError, DiskFull
from raftkv.packing import array_header, bin_header
from raftkv.storage import fsutil
from raftkv.storage.fs import OS, File, FileSystem
from raftkv.storage.record import (
    HEADER,
    MAX_PAYLOAD,
    Record,
    RecordType,
    checksum,
    extend_checksum,
    parse_at,
)
from raftkv.storage.schema import ENCODER, FORMAT_VERSION, SNAPSHOT_DECODER, SnapshotBody
from raftkv.storage.stats import StorageStats

MAGIC = b"RKVSNAP\x01"
_NAME = re.compile(r"^snap-(\d{20})\.snap$")


def snapshot_name(index: int) -> str:
    return f"snap-{index:020d}.snap"


def encode_snapshot(snapshot: Snapshot) -> bytes:
    return b"".join(snapshot_file_parts(snapshot))


def snapshot_file_parts(snapshot: Snapshot) -> tuple[bytes, bytes, bytes]:
    """The file's bytes in three parts: what precedes snapshot.data (the magic, the record
    header, the body's fields before it), snapshot.data itself (not copied), and what follows
    it. The body is the msgpack of a SnapshotBody, written by hand around the data."""
    before = b"".join(
        [
            array_header(_BODY_FIELDS),
            ENCODER.encode(FORMAT_VERSION),
            ENCODER.encode(snapshot.index),
            ENCODER.encode(snapshot.term),
            ENCODER.encode(list(snapshot.voters)),
            bin_header(len(snapshot.data)),
        ]
    )
    after = ENCODER.encode(list(snapshot.learners))
    rtype = RecordType.SNAPSHOT_FILE
    size = len(before) + len(snapshot.data) + len(after)
    if size > MAX_PAYLOAD:
        raise ValueError(f"snapshot record of {size} bytes exceeds {MAX_PAYLOAD}")
    crc = extend_checksum(extend_checksum(checksum(rtype, before), snapshot.data), after)
    return MAGIC + HEADER.pack(size, int(rtype), crc) + before, snapshot.data, after


_BODY_FIELDS = len(SnapshotBody.__struct_fields__)
# A snapshot file is made durable this much at a time: a WAL sync issued meanwhile waits
# behind at most this much of it, not behind the whole file (the WAL syncs on the event loop).
SYNC_EVERY = 4 * 1024 * 1024


def read_snapshot(path: Path, fs: FileSystem = OS) -> Snapshot:
    """Load and verify one snapshot file; CorruptionError names the file and offset."""
    snap = parse_snapshot(fs.read_bytes(path), path)
    match = _NAME.match(path.name)
    if match is None or int(match.group(1)) != snap.index:
        raise CorruptionError(f"{path.name}: holds index {snap.index}", str(path), len(MAGIC))
    return snap


def parse_snapshot(buf: bytes, path: Path) -> Snapshot:
    """Verify and decode a snapshot file's bytes (under any name, e.g. a backup copy)."""
    where = str(path)
    if buf[: len(MAGIC)] != MAGIC:
        raise CorruptionError(f"{path.name}: not a raftkv snapshot (bad magic)", where, 0)
    parsed = parse_at(buf, len(MAGIC))
    if not isinstance(parsed, Record) or parsed.rtype is not RecordType.SNAPSHOT_FILE:
        problem = parsed.problem if not isinstance(parsed, Record) else "wrong record type"
        raise CorruptionError(f"{path.name}: {problem}", where, len(MAGIC))
    if parsed.end != len(buf):
        raise CorruptionError(f"{path.name}: trailing bytes after the snapshot", where, parsed.end)
    try:
        body = SNAPSHOT_DECODER.decode(parsed.payload)
    except msgspec.DecodeError as exc:
        raise CorruptionError(
            f"{path.name}: undecodable snapshot: {exc}", where, len(MAGIC)
        ) from exc
    if body.version != FORMAT_VERSION:
        raise CorruptionError(f"{path.name}: unsupported version {body.version}", where, len(MAGIC))
    return Snapshot(body.index, body.term, body.data, tuple(body.voters), tuple(body.learners))


class SnapshotStore:
    def __init__(
        self,
        directory: Path,
        keep: int,
        sync: bool,
        stats: StorageStats,
        who: str,
        fs: FileSystem = OS,
    ) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.fs = fs
        self.directory = directory
        self.keep = keep
        self.sync = sync
        self.stats = stats
        self._who = who  # "node n1": starts every error message

    def list(self) -> list[tuple[int, Path]]:
        """(index, path) of every snapshot file, oldest first."""
        found = []
        for name in self.fs.listdir(self.directory):
            match = _NAME.match(name)
            if match:
                found.append((int(match.group(1)), self.directory / name))
        return sorted(found)

    def load_newest(self) -> Snapshot | None:
        files = self.list()
        return read_snapshot(files[-1][1], self.fs) if files else None

    def write(self, snapshot: Snapshot) -> Path:
        """Durably write snapshot under its final name (replacing one at the same index).

        Raises DiskError (DiskFull when out of space) if the file could not be written: then
        nothing changed. An OSError (the directory fsync after the rename failed) means the
        directory's state is unknown: the caller must fail the storage."""
        path = self.directory / snapshot_name(snapshot.index)
        tmp = path.with_name(path.name + ".tmp")
        parts = snapshot_file_parts(snapshot)
        size = sum(len(part) for part in parts)
        try:
            f = self.fs.open(tmp, create=True, truncate=True)
            try:
                self._write_paced(f, parts)
                if self.sync:
                    f.fsync()
                    self.stats.fsyncs += 1
            finally:
                f.close()
            self.fs.rename(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                self.fs.unlink(tmp)  # a partial file must not keep the space the node needs
            self.stats.snapshot_failures += 1
            free = self.fs.free_bytes(self.directory)
            cls = DiskFull if fsutil.no_space(exc) else DiskError
            raise cls(
                f"{self._who}: cannot write snapshot {path} ({fsutil.mib(size)}): "
                f"{exc.strerror or exc} ({fsutil.mib(free)} free)",
                str(path),
            ) from exc
        if self.sync:
            self.fs.fsync_dir(self.directory)
            self.stats.fsyncs += 1
        self.stats.bytes_written += size
        self.stats.snapshots_saved += 1
        return path

    def _write_paced(self, f: File, parts: tuple[bytes, bytes, bytes]) -> None:
        """Write parts one after the other, making each SYNC_EVERY bytes durable before the
        next are written (the last ones are left to the caller's fsync)."""
        offset = unsynced = 0
        for part in parts:
            view = memoryview(part)
            for start in range(0, len(view), SYNC_EVERY):
                if self.sync and unsynced >= SYNC_EVERY:
                    f.datasync()
                    self.stats.fsyncs += 1
                    unsynced = 0
                piece = view[start : start + SYNC_EVERY]
                fsutil.write_all(f, piece, offset)
                offset += len(piece)
                unsynced += len(piece)

    def prune(self, keep: int | None = None) -> int:
        """Delete all but the newest `keep` (default: self.keep) snapshot files; how many."""
        files = self.list()
        old = files[: max(0, len(files) - (keep or self.keep))]
        for _, path in old:
            with contextlib.suppress(FileNotFoundError):  # pruned by a concurrent writer
                self.fs.unlink(path)
            self.stats.snapshots_removed += 1
        if self.sync and old:
            self.fs.fsync_dir(self.directory)
            self.stats.fsyncs += 1
        return len(old)
