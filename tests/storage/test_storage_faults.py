"""Storage faults (EIO, ENOSPC, short writes): DiskError, then every later write is refused."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from raftkv.core.types import HardState, Snapshot
from raftkv.errors import DiskError, DiskFull
from raftkv.storage import LogStorage

from .helpers import make


def _assert_refuses_everything(storage: LogStorage) -> None:
    with pytest.raises(DiskError, match="failed earlier"):
        storage.save(None, make(storage.last_index() + 1, storage.last_index() + 1))
    with pytest.raises(DiskError, match="failed earlier"):
        storage.save(HardState(9, "x", 0), [])
    with pytest.raises(DiskError, match="failed earlier"):
        storage.install_snapshot(Snapshot(1, 1, b""))
    with pytest.raises(DiskError, match="failed earlier"):
        storage.compact(0)
    assert storage.failed is not None


def test_fdatasync_eio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage, _ = LogStorage.open(tmp_path)
    storage.save(HardState(1, "a", 0), make(1, 3))

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", broken)
    with pytest.raises(DiskError, match="Input/output error"):
        storage.save(HardState(1, "a", 3), make(4, 4))
    monkeypatch.undo()  # the disk "recovers": the storage must still refuse (fsync state is lost)
    _assert_refuses_everything(storage)
    # The batch was appended (last_index counts appends), but its sync failed: nothing is
    # acknowledged from here on, and what recovery finds below is all that may be trusted.
    assert storage.last_index() == 4
    storage.close()
    storage, recovered = LogStorage.open(tmp_path)
    storage.close()
    assert [e.index for e in recovered.entries][:3] == [1, 2, 3]


def test_write_enospc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage, _ = LogStorage.open(tmp_path)
    storage.save(None, make(1, 2))

    def full(fd: int, data: bytes | memoryview, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(DiskError, match="No space left"):
        storage.save(None, make(3, 3))
    monkeypatch.undo()
    _assert_refuses_everything(storage)
    storage.close()


def test_partial_write_then_eio_leaves_a_recoverable_torn_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage, _ = LogStorage.open(tmp_path)
    storage.save(HardState(1, "a", 2), make(1, 5, size=50))
    real = os.pwrite

    def half_then_eio(fd: int, data: bytes | memoryview, offset: int) -> int:
        view = memoryview(data)
        if len(view) > 40:
            return real(fd, view[: len(view) // 2], offset)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "pwrite", half_then_eio)
    with pytest.raises(DiskError):
        storage.save(HardState(1, "a", 5), make(6, 9, size=50))
    monkeypatch.undo()
    storage.close()
    storage, recovered = LogStorage.open(tmp_path)
    storage.close()
    assert recovered.torn_tail is not None
    assert recovered.entries == make(1, 5, size=50)
    assert recovered.hard_state == HardState(1, "a", 2)


def test_short_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage, _ = LogStorage.open(tmp_path)
    real = os.pwrite

    def three_bytes_at_a_time(fd: int, data: bytes | memoryview, offset: int) -> int:
        return real(fd, memoryview(data)[:3], offset)

    monkeypatch.setattr(os, "pwrite", three_bytes_at_a_time)
    storage.save(HardState(2, "b", 1), make(1, 4, size=30))
    monkeypatch.undo()
    storage.close()
    storage, recovered = LogStorage.open(tmp_path)
    storage.close()
    assert recovered.entries == make(1, 4, size=30)


def test_enospc_while_preallocating_a_new_segment_writes_nothing_and_keeps_the_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [0.0]
    storage, _ = LogStorage.open(tmp_path, node_id="n1", segment_bytes=1024, clock=lambda: now[0])
    storage.save(None, make(1, 1, size=600))
    calls = []

    def no_space(fd: int, offset: int, length: int) -> None:
        calls.append(length)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    with pytest.raises(
        DiskFull,
        match=r"node n1: cannot preallocate WAL segment .*wal-0000000002\.log.*No space left",
    ):
        storage.save(None, make(2, 2, size=600))  # needs a new segment
    assert storage.failed is None and storage.last_index() == 1
    tried = len(calls)
    with pytest.raises(DiskFull):  # within the backoff: not even tried again
        storage.save(None, make(2, 2, size=600))
    assert len(calls) == tried
    monkeypatch.undo()  # space is back; after the backoff the write goes through
    now[0] += 10.0
    storage.save(None, make(2, 2, size=600))
    storage.close()
    storage, recovered = LogStorage.open(tmp_path, segment_bytes=1024)
    storage.close()
    assert recovered.entries == make(1, 2, size=600)
    assert not list(tmp_path.glob("*.tmp"))


def test_snapshot_write_failure_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage, _ = LogStorage.open(tmp_path, node_id="n1")
    storage.save(None, make(1, 5))
    failed_fds = []

    def broken(fd: int) -> None:
        failed_fds.append(fd)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(DiskError, match=r"node n1: cannot write snapshot .*snap-0+3\.snap"):
        storage.install_snapshot(Snapshot(3, 1, b"state"))
    monkeypatch.undo()
    assert len(failed_fds) == 1  # the failed fsync was not retried
    assert storage.failed is None  # the log was not touched: it keeps working
    assert not list(tmp_path.glob("*.tmp"))
    storage.save(None, make(6, 6))
    storage.install_snapshot(Snapshot(3, 1, b"state"))  # a later attempt writes a new file
    storage.close()
    storage, recovered = LogStorage.open(tmp_path)
    storage.close()
    assert recovered.snapshot == Snapshot(3, 1, b"state")
    assert recovered.entries == make(4, 6)


def test_open_on_a_file_is_a_disk_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_bytes(b"")
    with pytest.raises(DiskError, match="cannot open"):
        LogStorage.open(not_a_dir)
