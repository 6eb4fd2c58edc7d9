"""LogStorage on small and full volumes (real ENOSPC on a tmpfs): DiskFull writes nothing and
keeps the storage usable, writes resume once space is back, a snapshot that does not fit
changes nothing, and every error names the node and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftkv.core.types import HardState, Snapshot
from raftkv.errors import CorruptionError, DiskFull
from raftkv.storage import LogStorage
from raftkv.storage.fsutil import free_bytes
from raftkv.storage.segment import SPARE_NAME, segment_name
from storage.helpers import make

from .conftest import Volume
from .volumes import fill

MIB = 1024 * 1024


class Clock:
    """A clock the test moves by hand (the storage's retry backoff)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_segment_bigger_than_the_volume_is_refused_with_what_to_do(volume: Volume) -> None:
    vol = volume("small", 32)
    directory = vol / "raft"
    with pytest.raises(DiskFull) as info:
        LogStorage.open(directory, node_id="n1")  # the default: 64 MiB segments
    message = str(info.value)
    assert f"node n1: cannot preallocate WAL segment {directory / segment_name(1)} (64 MiB)" in (
        message
    )
    assert "No space left on device" in message and "MiB free" in message
    assert "--wal-segment-mb" in message
    assert info.value.path == str(directory / segment_name(1))
    assert sorted(p.name for p in directory.iterdir()) == ["LOCK"]  # nothing left behind
    assert free_bytes(vol) > 31 * MIB

    # Smaller segments work on the same volume, across several segments and a restart.
    storage, _ = LogStorage.open(directory, node_id="n1", segment_bytes=4 * MIB)
    for i in range(1, 11):
        storage.save(HardState(1, "n1", i), make(i, i, size=MIB))
    assert storage.stats.segments_created >= 3
    storage.close()
    storage, recovered = LogStorage.open(directory, node_id="n1", segment_bytes=4 * MIB)
    storage.close()
    assert recovered.entries == make(1, 10, size=MIB)
    assert recovered.torn_tail is None


def test_a_full_wal_refuses_writes_and_resumes_when_space_returns(volume: Volume) -> None:
    vol = volume("full", 16)
    clock = Clock()
    storage, _ = LogStorage.open(vol / "raft", node_id="n1", segment_bytes=MIB, clock=clock)
    filler = fill(vol)
    written = 0
    with pytest.raises(DiskFull) as info:
        for _ in range(100):
            storage.check_room(1, 64 * 1024)
            written += 1
            storage.save(HardState(1, "n1", written), make(written, written, size=64 * 1024))
    message = str(info.value)
    assert message.startswith(f"node n1: no room in the WAL ({vol / 'raft'})")
    assert f"cannot preallocate WAL segment {vol / 'raft' / segment_name(2)}" in message
    assert "No space left on device" in message
    assert 10 <= written < 16  # the first segment (1 MiB) filled up, less what it keeps spare
    assert storage.failed is None
    assert storage.stats.allocation_failures >= 1 and storage.stats.room_refusals >= 1
    # Small records still fit in what check_room keeps spare (a new term, a commit index).
    storage.save(HardState(2, "n1", written), [])

    filler.unlink()
    with pytest.raises(DiskFull):  # not tried again before the backoff is over
        storage.check_room(1, 64 * 1024)
    clock.now += 60
    for i in range(written + 1, written + 41):  # 2.5 MiB more: two more segments
        storage.check_room(1, 64 * 1024)
        storage.save(HardState(2, "n1", i), make(i, i, size=64 * 1024))
    storage.close()
    storage, recovered = LogStorage.open(vol / "raft", segment_bytes=MIB)
    storage.close()
    assert recovered.entries == make(1, written + 40, size=64 * 1024)
    assert recovered.hard_state == HardState(2, "n1", written + 40)
    assert recovered.torn_tail is None


def test_a_snapshot_that_does_not_fit_changes_nothing(volume: Volume) -> None:
    vol = volume("snap", 16)
    storage, _ = LogStorage.open(vol / "raft", node_id="n1", segment_bytes=MIB)
    storage.save(HardState(1, "n1", 5), make(1, 5, size=1000))
    filler = fill(vol, leave=256 * 1024)
    free = free_bytes(vol)
    with pytest.raises(DiskFull) as info:
        storage.install_snapshot(Snapshot(5, 1, b"s" * 2 * MIB))
    snap_path = vol / "raft" / "snap-00000000000000000005.snap"
    assert str(info.value).startswith(f"node n1: cannot write snapshot {snap_path} (2.0 MiB)")
    assert storage.failed is None
    assert free_bytes(vol) == free  # the partial file is gone, and its space with it
    assert not list((vol / "raft").glob("*.snap*"))
    storage.save(HardState(1, "n1", 6), make(6, 6, size=1000))  # the WAL goes on

    filler.unlink()
    storage.install_snapshot(Snapshot(5, 1, b"s" * 2 * MIB))
    storage.close()
    storage, recovered = LogStorage.open(vol / "raft", segment_bytes=MIB)
    storage.close()
    assert recovered.snapshot == Snapshot(5, 1, b"s" * 2 * MIB)
    assert recovered.entries == make(6, 6, size=1000)


def test_a_full_disk_gives_up_older_snapshot_files_for_a_new_one(volume: Volume) -> None:
    vol = volume("older", 24)
    directory = vol / "raft"
    storage, _ = LogStorage.open(directory, segment_bytes=MIB, keep_snapshots=3)
    storage.save(None, make(1, 3))
    storage.install_snapshot(Snapshot(1, 1, b"a" * 3 * MIB))
    storage.install_snapshot(Snapshot(2, 1, b"b" * 3 * MIB))
    fill(vol, leave=MIB)
    storage.install_snapshot(Snapshot(3, 1, b"c" * 3 * MIB))  # fits once snap 1 is gone
    assert sorted(p.name for p in directory.glob("*.snap*")) == [
        "snap-00000000000000000002.snap",
        "snap-00000000000000000003.snap",
    ]
    storage.close()
    storage, recovered = LogStorage.open(directory, segment_bytes=MIB)
    storage.close()
    assert recovered.snapshot == Snapshot(3, 1, b"c" * 3 * MIB)


def test_the_next_segment_is_reserved_ahead_and_then_used(tmp_path: Path) -> None:
    storage, _ = LogStorage.open(tmp_path, segment_bytes=64 * 1024)
    index = 0
    while not (tmp_path / SPARE_NAME).exists():  # reserved once the segment is half full
        index += 1
        storage.save(None, make(index, index, size=2000))
        assert index < 30
    assert index >= 15  # not before half of the 64 KiB segment
    spare = (tmp_path / SPARE_NAME).stat()
    assert spare.st_size == 64 * 1024
    while not (tmp_path / segment_name(2)).exists():
        index += 1
        storage.save(None, make(index, index, size=2000))
    assert (tmp_path / segment_name(2)).stat().st_ino == spare.st_ino
    assert not (tmp_path / SPARE_NAME).exists()
    storage.close()
    storage, recovered = LogStorage.open(tmp_path, segment_bytes=64 * 1024)
    storage.close()
    assert recovered.entries == make(1, index, size=2000)


def test_a_corrupt_newest_snapshot_is_refused_naming_node_and_file(tmp_path: Path) -> None:
    storage, _ = LogStorage.open(tmp_path)
    storage.save(None, make(1, 4))
    storage.install_snapshot(Snapshot(2, 1, b"older"))
    storage.install_snapshot(Snapshot(4, 1, b"newest"))
    storage.close()
    newest = tmp_path / "snap-00000000000000000004.snap"
    data = bytearray(newest.read_bytes())
    data[-2] ^= 0xFF
    newest.write_bytes(bytes(data))
    with pytest.raises(CorruptionError) as info:
        LogStorage.open(tmp_path, node_id="n1")
    assert str(info.value).startswith("node n1: snap-00000000000000000004.snap: checksum mismatch")
    assert str(newest) in str(info.value)
    assert info.value.path == str(newest)
