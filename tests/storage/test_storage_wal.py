"""LogStorage basics: round trip, suffix overwrite, hard state, segments, group commit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from raftkv.core.types import Entry, EntryKind, HardState
from raftkv.errors import DiskError
from raftkv.storage import LogStorage

from .helpers import make, segments


def test_new_directory_is_created_with_parents(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "b" / "node1"
    storage, recovered = LogStorage.open(directory)
    with storage:
        assert recovered.hard_state == HardState()
        assert recovered.entries == []
        assert recovered.snapshot is None
        assert recovered.torn_tail is None
        assert (storage.first_index(), storage.last_index()) == (1, 0)
    assert len(segments(directory)) == 1


def test_round_trip(tmp_path: Path) -> None:
    written = [*make(1, 3), Entry(2, 4, EntryKind.NOOP), Entry(2, 5, EntryKind.CONFIG, b"cfg")]
    storage, _ = LogStorage.open(tmp_path)
    storage.save(HardState(2, "n1", 3), written[:2])
    storage.save(None, written[2:])
    storage.close()
    storage, recovered = LogStorage.open(tmp_path)
    with storage:
        assert recovered.entries == written
        assert recovered.hard_state == HardState(2, "n1", 3)
        assert (storage.first_index(), storage.last_index()) == (1, 5)
        # Appending after recovery continues the same log.
        storage.save(None, make(6, 7, term=2))
    storage, recovered = LogStorage.open(tmp_path)
    storage.close()
    assert recovered.entries == written + make(6, 7, term=2)


def test_overwrite_suffix(tmp_path: Path) -> None:
    storage, _ = LogStorage.open(tmp_path)
    storage.save(HardState(1, "a", 0), make(1, 10, term=1))
    storage.save(HardState(2, "b", 5), make(6, 8, term=2))
    assert storage.last_index() == 8
    storage.save(None, make(8, 9, term=3))  # overwrite just the last one, then grow
    storage.save(None, make(2, 2, term=4))  # overwrite almost everything
    storage.close()
    storage, recovered = LogStorage.open(tmp_path)
    storage.close()
    assert recovered.entries == make(1, 1, term=1) + make(2, 2, term=4)
    assert recovered.hard_state == HardState(2, "b", 5)


def test_hard_state_only(tmp_path: Path) -> None:
    storage, _ = LogStorage.open(tmp_path)
    storage.save(HardState(1, None, 0), [])
    storage.save(HardState(3, "n2", 0), ())
    storage.close()
    storage, recovered = LogStorage.open(tmp_path)
    storage.close()
    assert recovered.hard_state == HardState(3, "n2", 0)
    assert recovered.entries == []


def test_empty_save_writes_nothing(tmp_path: Path) -> None:
    storage, _ = LogStorage.open(tmp_path)
    with storage:
        before = storage.stats.as_dict()
        storage.save(None, [])
        assert storage.stats.as_dict() == before


def test_reopen_after_many_segments(tmp_path: Path) -> None:
    storage, _ = LogStorage.open(tmp_path, segment_bytes=1024)
    for i in range(1, 401):
        storage.save(HardState(1 + i // 100, "n1", i - 1), make(i, i, term=1 + i // 100, size=40))
    assert storage.stats.segments_created >= 20
    storage.close()
    assert len(segments(tmp_path)) >= 20
    storage, recovered = LogStorage.open(tmp_path, segment_bytes=1024)
    storage.close()
    assert [e.index for e in recovered.entries] == list(range(1, 401))
    assert recovered.entries[-1] == make(400, 400, term=5, size=40)[0]
    assert recovered.hard_state == HardState(5, "n1", 399)


def test_a_record_bigger_than_a_segment(tmp_path: Path) -> None:
    storage, _ = LogStorage.open(tmp_path, segment_bytes=1024)
    storage.save(None, make(1, 1))
    storage.save(None, make(2, 3, size=5000))
    storage.save(None, make(4, 4))
    storage.close()
    storage, recovered = LogStorage.open(tmp_path, segment_bytes=1024)
    storage.close()
    assert recovered.entries == make(1, 1) + make(2, 3, size=5000) + make(4, 4)


def test_group_commit_is_one_fdatasync_per_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage, _ = LogStorage.open(tmp_path)
    calls: list[int] = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting)
    with storage:
        fsyncs = storage.stats.fsyncs
        storage.save(HardState(1, "a", 0), make(1, 64))
        storage.save(HardState(1, "a", 64), [])
        storage.save(None, make(65, 65))
        assert len(calls) == 3
        assert storage.stats.fsyncs - fsyncs == 3
        assert storage.stats.appends == 65
        assert storage.stats.saves == 3
        assert storage.stats.hard_states == 2


def test_invalid_appends_are_rejected_without_writing(tmp_path: Path) -> None:
    storage, _ = LogStorage.open(tmp_path)
    with storage:
        storage.save(None, make(1, 5))
        written = storage.stats.bytes_written
        with pytest.raises(ValueError, match="start at 7"):
            storage.save(None, make(7, 8))  # gap
        with pytest.raises(ValueError, match="contiguous"):
            storage.save(None, [*make(6, 6), *make(8, 8)])
        with pytest.raises(ValueError, match="start at 0"):
            storage.save(None, [Entry(1, 0)])
        assert storage.stats.bytes_written == written
        storage.save(None, make(6, 6))  # still usable: invalid input is not a disk failure
        assert storage.last_index() == 6


def test_second_open_of_same_directory_is_refused(tmp_path: Path) -> None:
    storage, _ = LogStorage.open(tmp_path)
    with storage, pytest.raises(DiskError, match="in use"):
        LogStorage.open(tmp_path)
    storage, _ = LogStorage.open(tmp_path)  # released on close
    storage.close()
    storage.close()  # idempotent


def test_use_after_close_is_refused(tmp_path: Path) -> None:
    storage, _ = LogStorage.open(tmp_path)
    storage.close()
    with pytest.raises(DiskError, match="closed"):
        storage.save(None, make(1, 1))


def test_leftover_tmp_files_are_removed(tmp_path: Path) -> None:
    storage, _ = LogStorage.open(tmp_path)
    storage.close()
    (tmp_path / "wal-0000000002.log.tmp").write_bytes(b"half a segment")
    (tmp_path / "snap-00000000000000000009.snap.tmp").write_bytes(b"half a snapshot")
    storage, recovered = LogStorage.open(tmp_path)
    storage.close()
    assert recovered.torn_tail is None
    assert not list(tmp_path.glob("*.tmp"))


def test_segment_bytes_too_small(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="segment_bytes"):
        LogStorage.open(tmp_path, segment_bytes=10)
