"""Zero fill ahead of the WAL tail: the space the next records go to holds written zeros, not
the unwritten extents posix_fallocate leaves (whose first write costs a journal commit)."""

from __future__ import annotations

import fcntl
import struct
from pathlib import Path

import pytest

from raftkv.core.types import HardState
from raftkv.storage import LogStorage
from raftkv.storage.wal import ZERO_AHEAD_BYTES

from .helpers import make, segments

FS_IOC_FIEMAP = 0xC020660B
FIEMAP_FLAG_SYNC = 0x1
FIEMAP_EXTENT_UNWRITTEN = 0x800
_MAX_EXTENTS = 64


def unwritten_ranges(path: Path) -> list[tuple[int, int]]:
    """(start, end) byte ranges of path's unwritten (preallocated, never written) extents."""
    head = struct.pack("=QQIIII", 0, 2**64 - 1, FIEMAP_FLAG_SYNC, 0, _MAX_EXTENTS, 0)
    buf = bytearray(head + bytes(56 * _MAX_EXTENTS))
    with path.open("rb") as f:
        try:
            fcntl.ioctl(f.fileno(), FS_IOC_FIEMAP, buf)
        except OSError as e:
            pytest.skip(f"FIEMAP unsupported here: {e}")
    mapped = struct.unpack_from("=I", buf, 20)[0]
    ranges = []
    for k in range(mapped):
        logical, _, length = struct.unpack_from("=QQQ", buf, 32 + 56 * k)
        flags = struct.unpack_from("=I", buf, 32 + 56 * k + 40)[0]
        if flags & FIEMAP_EXTENT_UNWRITTEN:
            ranges.append((logical, logical + length))
    return ranges


def overlaps(ranges: list[tuple[int, int]], start: int, end: int) -> bool:
    return any(a < end and start < b for a, b in ranges)


def test_space_ahead_of_the_tail_is_written_zeros(tmp_path: Path) -> None:
    storage, _ = LogStorage.open(tmp_path)
    with storage:
        storage.save(HardState(1, "n1", 0), make(1, 20, size=300))
        path = segments(tmp_path)[-1]
        tail = storage.stats.bytes_written  # header + records: where the next record goes
        assert storage.stats.zero_fill_bytes >= ZERO_AHEAD_BYTES // 2
        assert not overlaps(unwritten_ranges(path), 0, tail + ZERO_AHEAD_BYTES // 2)
        if not unwritten_ranges(path):
            pytest.skip("this filesystem does not preallocate with unwritten extents")
        # Space far beyond the zero fill stays merely reserved.
        assert overlaps(unwritten_ranges(path), tail + 2 * ZERO_AHEAD_BYTES, 2**40)


def test_zero_fill_is_topped_up_as_the_tail_advances(tmp_path: Path) -> None:
    storage, _ = LogStorage.open(tmp_path, segment_bytes=32 * 1024 * 1024)
    with storage:
        index = 1
        for _ in range(8):  # 8 x 1 MiB: twice past the first top-up point
            storage.save(None, make(index, index + 15, size=64 * 1024))
            index += 16
        path = segments(tmp_path)[-1]
        tail = storage.stats.bytes_written
        assert not overlaps(unwritten_ranges(path), 0, tail + ZERO_AHEAD_BYTES // 2)


def test_a_reopened_segment_is_zero_filled_from_its_tail_and_still_recovers(
    tmp_path: Path,
) -> None:
    storage, _ = LogStorage.open(tmp_path)
    storage.save(HardState(1, "n1", 0), make(1, 5))
    storage.close()
    storage, recovered = LogStorage.open(tmp_path)
    with storage:
        assert [e.index for e in recovered.entries] == [1, 2, 3, 4, 5]
        storage.save(None, make(6, 6))
        assert storage.stats.zero_fill_bytes > 0
    storage, recovered = LogStorage.open(tmp_path)
    with storage:
        assert [e.index for e in recovered.entries] == [1, 2, 3, 4, 5, 6]
        assert recovered.torn_tail is None


def test_without_sync_nothing_is_zero_filled(tmp_path: Path) -> None:
    storage, _ = LogStorage.open(tmp_path, sync=False)
    with storage:
        storage.save(HardState(1, "n1", 0), make(1, 5))
        assert storage.stats.zero_fill_bytes == 0
