"""Snapshots (save, load, keep last N, corruption) and compaction of old segments."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from raftkv.core.types import HardState, Snapshot
from raftkv.errors import CorruptionError, DiskError
from raftkv.storage import LogStorage
from raftkv.storage.record import RecordType, frame
from raftkv.storage.schema import ENCODER, FORMAT_VERSION, SnapshotBody
from raftkv.storage.snapshot import (
    MAGIC,
    SYNC_EVERY,
    SnapshotStore,
    encode_snapshot,
    read_snapshot,
    snapshot_file_parts,
)
from raftkv.storage.stats import StorageStats
from raftkv.storage.wal import LogStorage as _Impl

from .helpers import flip, make, segments


def _snapshot_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("snap-*.snap"))


def test_snapshot_save_and_load(tmp_path: Path) -> None:
    storage, _ = LogStorage.open(tmp_path)
    storage.save(HardState(2, "n1", 8), make(1, 10, term=2))
    snap = Snapshot(8, 2, b"state machine image", ("n1", "n2", "n3"))
    storage.install_snapshot(snap)
    assert (storage.first_index(), storage.last_index()) == (9, 10)
    storage.close()
    storage, recovered = LogStorage.open(tmp_path)
    with storage:
        assert recovered.snapshot == snap
        assert recovered.entries == make(9, 10, term=2)
        assert recovered.hard_state == HardState(2, "n1", 8)
        assert (storage.first_index(), storage.last_index()) == (9, 10)
        with pytest.raises(ValueError, match=r"log holds 9\.\.10"):
            storage.save(None, make(8, 8, term=2))  # inside the snapshot


def test_keep_last_n_snapshots(tmp_path: Path) -> None:
    storage, _ = LogStorage.open(tmp_path, keep_snapshots=3)
    storage.save(None, make(1, 50))
    for index in (10, 20, 30, 40, 50):
        storage.install_snapshot(Snapshot(index, 1, b"upto %d" % index))
    storage.close()
    assert _snapshot_files(tmp_path) == [
        "snap-00000000000000000030.snap",
        "snap-00000000000000000040.snap",
        "snap-00000000000000000050.snap",
    ]
    assert storage.stats.snapshots_saved == 5
    assert storage.stats.snapshots_removed == 2
    storage, recovered = LogStorage.open(tmp_path)
    storage.close()
    assert recovered.snapshot == Snapshot(50, 1, b"upto 50")
    assert recovered.entries == []


@pytest.mark.parametrize("offset", [3, 8, 12, 20, -1])
def test_corrupt_snapshot_file_is_detected(tmp_path: Path, offset: int) -> None:
    storage, _ = LogStorage.open(tmp_path)
    storage.save(None, make(1, 5))
    storage.install_snapshot(Snapshot(4, 1, b"x" * 100))
    storage.close()
    [name] = _snapshot_files(tmp_path)
    flip(tmp_path / name, offset if offset >= 0 else (tmp_path / name).stat().st_size - 1)
    with pytest.raises(CorruptionError) as info:
        LogStorage.open(tmp_path)
    assert info.value.path == str(tmp_path / name)
    assert info.value.offset in (0, 8)


def test_truncated_snapshot_file_is_detected(tmp_path: Path) -> None:
    storage, _ = LogStorage.open(tmp_path)
    storage.save(None, make(1, 5))
    storage.install_snapshot(Snapshot(4, 1, b"x" * 100))
    storage.close()
    [name] = _snapshot_files(tmp_path)
    path = tmp_path / name
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CorruptionError, match="past end of file"):
        LogStorage.open(tmp_path)


def test_snapshot_beyond_the_log_resets_it(tmp_path: Path) -> None:
    # A follower installing the leader's snapshot: nothing of its own log at that point.
    storage, _ = LogStorage.open(tmp_path)
    storage.save(HardState(1, None, 0), make(1, 10, term=1))
    storage.install_snapshot(Snapshot(20, 3, b"leader state"))
    assert (storage.first_index(), storage.last_index()) == (21, 20)
    storage.save(HardState(3, None, 20), make(21, 22, term=3))
    storage.close()
    storage, recovered = LogStorage.open(tmp_path)
    storage.close()
    assert recovered.snapshot == Snapshot(20, 3, b"leader state")
    assert recovered.entries == make(21, 22, term=3)


def test_snapshot_with_conflicting_term_discards_the_log(tmp_path: Path) -> None:
    storage, _ = LogStorage.open(tmp_path)
    storage.save(None, make(1, 10, term=1))
    storage.install_snapshot(Snapshot(5, 2, b"other history"))
    assert storage.last_index() == 5
    storage.save(None, make(6, 6, term=2))
    storage.close()
    storage, recovered = LogStorage.open(tmp_path)
    storage.close()
    assert recovered.entries == make(6, 6, term=2)


@pytest.mark.parametrize("term", [1, 2])
def test_crash_between_snapshot_file_and_wal_mark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, term: int
) -> None:
    storage, _ = LogStorage.open(tmp_path)
    storage.save(None, make(1, 10, term=1))
    real = _Impl._append

    def crash_on_mark(self: _Impl, rtype: RecordType, payload: object) -> None:
        if rtype is RecordType.SNAPSHOT_MARK:
            raise OSError(errno.EIO, "crash")
        real(self, rtype, payload)  # type: ignore[arg-type]

    monkeypatch.setattr(_Impl, "_append", crash_on_mark)
    with pytest.raises(DiskError):
        storage.install_snapshot(Snapshot(6, term, b"s"))
    monkeypatch.undo()
    storage.close()
    # The snapshot file is durable, so recovery finishes applying it (and records that).
    expected = make(7, 10, term=1) if term == 1 else []
    storage, recovered = LogStorage.open(tmp_path)
    assert recovered.snapshot == Snapshot(6, term, b"s")
    assert recovered.entries == expected
    storage.save(None, make(storage.last_index() + 1, 12, term=3))
    storage.close()
    storage, recovered = LogStorage.open(tmp_path)
    storage.close()
    assert recovered.entries == expected + make(len(expected) + 7, 12, term=3)


def test_snapshot_file_missing_for_wal_mark(tmp_path: Path) -> None:
    storage, _ = LogStorage.open(tmp_path)
    storage.save(None, make(1, 10))
    storage.install_snapshot(Snapshot(5, 1, b"s"))
    storage.close()
    for path in tmp_path.glob("snap-*.snap"):
        path.unlink()
    with pytest.raises(CorruptionError, match="snapshot files are missing"):
        LogStorage.open(tmp_path)


def test_compaction_drops_old_segments_and_keeps_everything_needed(tmp_path: Path) -> None:
    storage, _ = LogStorage.open(tmp_path, segment_bytes=1024)
    storage.save(HardState(7, "n3", 0), [])  # the only hard state: lives in segment 1
    for i in range(1, 201):
        storage.save(None, make(i, i, term=7, size=60))
    before = segments(tmp_path)
    with pytest.raises(ValueError, match="newest snapshot"):
        storage.compact(150)
    storage.install_snapshot(Snapshot(150, 7, b"upto 150"))
    storage.compact(150)
    after = segments(tmp_path)
    assert len(after) < len(before) / 3
    assert after[-1] == before[-1]
    assert storage.stats.segments_removed == len(before) - len(after)
    storage.save(None, make(201, 205, term=8))
    storage.close()
    storage, recovered = LogStorage.open(tmp_path, segment_bytes=1024)
    storage.close()
    assert recovered.hard_state == HardState(7, "n3", 0)
    assert recovered.snapshot == Snapshot(150, 7, b"upto 150")
    assert recovered.entries == make(151, 200, term=7, size=60) + make(201, 205, term=8)


def test_compaction_keeps_segments_with_entries_at_or_after_the_snapshot(tmp_path: Path) -> None:
    storage, _ = LogStorage.open(tmp_path, segment_bytes=1024)
    for i in range(1, 101):
        storage.save(None, make(i, i, size=60))
    storage.install_snapshot(Snapshot(100, 1, b"all"))
    storage.compact(100)
    assert len(segments(tmp_path)) <= 2  # only the one holding 100 (if any) and the current
    storage.close()
    storage, recovered = LogStorage.open(tmp_path, segment_bytes=1024)
    storage.close()
    assert recovered.entries == []
    assert recovered.snapshot == Snapshot(100, 1, b"all")


def test_missing_segments_not_covered_by_the_snapshot(tmp_path: Path) -> None:
    storage, _ = LogStorage.open(tmp_path, segment_bytes=1024)
    for i in range(1, 101):
        storage.save(None, make(i, i, size=60))
    storage.install_snapshot(Snapshot(10, 1, b"early"))
    storage.close()
    for path in segments(tmp_path)[:-2]:
        path.unlink()  # an operator "freeing space" by hand
    with pytest.raises(CorruptionError, match="are missing"):
        LogStorage.open(tmp_path, segment_bytes=1024)


@pytest.mark.parametrize("size", [0, 300, 70_000])
def test_snapshot_file_is_msgspecs_encoding_of_its_body(size: int) -> None:
    """The file is written from parts around the data (the data is never copied): its bytes
    are exactly the framed msgspec encoding of a SnapshotBody, as before."""
    snap = Snapshot(9, 2, bytes(range(256)) * (size // 256) + b"!", ("n1", "n2"), ("n3",))
    body = SnapshotBody(FORMAT_VERSION, 9, 2, ["n1", "n2"], snap.data, ["n3"])
    expected = MAGIC + frame(RecordType.SNAPSHOT_FILE, ENCODER.encode(body))
    assert encode_snapshot(snap) == expected
    assert b"".join(snapshot_file_parts(snap)) == expected
    assert snapshot_file_parts(snap)[1] is snap.data


def test_large_snapshot_is_made_durable_a_slice_at_a_time(tmp_path: Path) -> None:
    """A WAL sync must never wait behind a whole large snapshot: the file is synced every
    SYNC_EVERY bytes (here 2 datasyncs for 2.5 x SYNC_EVERY), then fsynced, then its
    directory. The file is still complete and verified on reading."""
    stats = StorageStats()
    store = SnapshotStore(tmp_path, keep=2, sync=True, stats=stats, who="node n1")
    snap = Snapshot(7, 1, b"s" * (SYNC_EVERY * 5 // 2), ("n1",))
    path = store.write(snap)
    assert stats.fsyncs == 2 + 1 + 1
    assert read_snapshot(path) == snap
    (tmp_path / "small").mkdir()
    small = SnapshotStore(tmp_path / "small", keep=2, sync=True, stats=StorageStats(), who="x")
    small.write(Snapshot(7, 1, b"s" * 1000, ("n1",)))
    assert small.stats.fsyncs == 1 + 1  # a small one: the file, then its directory
