"""faultfs keeps exactly what was synced: file data by the file's fsync, names by the
directory's fsync, nothing else; and its faults (torn write, fsync EIO, ENOSPC) behave."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest

from raftkv.faultfs import FaultMount


def write_file(path: Path, data: bytes, *, sync: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_file(fs: FaultMount, name: str, data: bytes) -> Path:
    path = fs.mountpoint / name
    write_file(path, data, sync=True)
    fsync_dir(path.parent)
    return path


def test_write_fsync_and_dir_fsync_survive_a_power_cut(fs: FaultMount) -> None:
    path = durable_file(fs, "a", b"hello")
    assert (fs.backing / "a").read_bytes() == b"hello"
    fs.power_cut()
    assert path.read_bytes() == b"hello"


def test_an_unsynced_write_is_lost_but_read_back_before_the_cut(fs: FaultMount) -> None:
    path = durable_file(fs, "a", b"old data")
    fd = os.open(path, os.O_WRONLY)
    os.pwrite(fd, b"NEW", 0)
    os.close(fd)
    assert path.read_bytes() == b"NEW data"
    assert (fs.backing / "a").read_bytes() == b"old data"
    report = fs.power_cut()
    assert report["dropped_ops"] >= 1
    assert path.read_bytes() == b"old data"


def test_a_synced_file_without_its_directory_fsync_is_lost(fs: FaultMount) -> None:
    path = fs.mountpoint / "new"
    write_file(path, b"data", sync=True)  # its data is durable, its name is not
    assert path.read_bytes() == b"data"
    fs.power_cut()
    assert not path.exists()
    assert sorted(os.listdir(fs.backing)) == [".faultfs"]  # the orphan died with the power


def test_a_name_synced_before_its_data_comes_back_empty(fs: FaultMount) -> None:
    path = fs.mountpoint / "named"
    write_file(path, b"data", sync=False)
    fsync_dir(fs.mountpoint)
    fs.power_cut()
    assert path.read_bytes() == b""


def test_rename_without_directory_fsync_is_lost(fs: FaultMount) -> None:
    durable_file(fs, "x.tmp", b"v2")
    durable_file(fs, "x", b"v1")
    os.rename(fs.mountpoint / "x.tmp", fs.mountpoint / "x")
    assert (fs.mountpoint / "x").read_bytes() == b"v2"
    assert not (fs.mountpoint / "x.tmp").exists()
    fs.power_cut()
    assert (fs.mountpoint / "x").read_bytes() == b"v1"
    assert (fs.mountpoint / "x.tmp").read_bytes() == b"v2"


def test_rename_with_directory_fsync_survives(fs: FaultMount) -> None:
    durable_file(fs, "x.tmp", b"v2")
    durable_file(fs, "x", b"v1")
    os.rename(fs.mountpoint / "x.tmp", fs.mountpoint / "x")
    fsync_dir(fs.mountpoint)
    fs.power_cut()
    assert (fs.mountpoint / "x").read_bytes() == b"v2"
    assert not (fs.mountpoint / "x.tmp").exists()


def test_unlink_without_directory_fsync_comes_back(fs: FaultMount) -> None:
    path = durable_file(fs, "gone", b"still here")
    path.unlink()
    assert not path.exists()
    fs.power_cut()
    assert path.read_bytes() == b"still here"


def test_a_directory_fsync_makes_only_that_directory_durable(fs: FaultMount) -> None:
    sub = fs.mountpoint / "sub"
    sub.mkdir()
    durable_file(fs, "sub/f", b"x")  # sub's entry "f" is durable, sub itself is not
    fs.power_cut()
    assert not sub.exists()
    sub.mkdir()
    fsync_dir(fs.mountpoint)
    durable_file(fs, "sub/f", b"x")
    fs.power_cut()
    assert (sub / "f").read_bytes() == b"x"


def test_a_renamed_directory_keeps_its_durable_files(fs: FaultMount) -> None:
    (fs.mountpoint / "d1").mkdir()
    fsync_dir(fs.mountpoint)
    durable_file(fs, "d1/f", b"inside")
    os.rename(fs.mountpoint / "d1", fs.mountpoint / "d2")
    fsync_dir(fs.mountpoint)
    durable_file(fs, "d2/g", b"later")
    fs.power_cut()
    assert sorted(os.listdir(fs.mountpoint / "d2")) == ["f", "g"]
    assert (fs.mountpoint / "d2" / "f").read_bytes() == b"inside"


def test_a_torn_write_keeps_a_prefix_of_the_newest_unsynced_write(fs: FaultMount) -> None:
    path = durable_file(fs, "log", b"A" * 100)
    fd = os.open(path, os.O_WRONLY)
    os.pwrite(fd, b"B" * 50, 100)  # unsynced, persisted in full by the tear (it came first)
    os.pwrite(fd, b"C" * 1000, 150)  # the newest unsynced write: torn
    os.close(fd)
    report = fs.power_cut(torn=True)
    torn = report["torn"]
    assert torn["file"] == "log" and torn["offset"] == 150 and torn["length"] == 1000
    kept = torn["kept"]
    assert 0 < kept < 1000
    assert path.read_bytes() == b"A" * 100 + b"B" * 50 + b"C" * kept


def test_fsync_eio_and_the_failed_data_is_never_written_back(fs: FaultMount) -> None:
    path = durable_file(fs, "f", b"durable")
    fs.fail_fsync(1)
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, b"DOOMED!", 0)
        with pytest.raises(OSError) as e:
            os.fsync(fd)
        assert e.value.errno == errno.EIO
        os.fsync(fd)  # a retry "succeeds" (as on Linux) but the failed data is gone
    finally:
        os.close(fd)
    assert path.read_bytes() == b"DOOMED!"  # still in the cache
    fs.power_cut()
    assert path.read_bytes() == b"durable"
    assert fs.status()["fsync_failures"] == 1


def test_enospc_past_the_quota(fs: FaultMount) -> None:
    path = durable_file(fs, "f", bytes(1000))
    got = fs.set_quota(free=100)
    assert got["quota"] == got["used"] + 100
    fd = os.open(path, os.O_RDWR)
    try:
        os.pwrite(fd, b"x" * 1000, 0)  # inside the file's size: needs no space
        os.pwrite(fd, b"y" * 100, 1000)  # exactly up to the quota
        with pytest.raises(OSError) as e:
            os.pwrite(fd, b"z", 1100)
        assert e.value.errno == errno.ENOSPC
        with pytest.raises(OSError) as e2:
            os.posix_fallocate(fd, 0, 4096)
        assert e2.value.errno == errno.ENOSPC
    finally:
        os.close(fd)
    st = os.statvfs(fs.mountpoint)
    assert st.f_bavail == 0
    fs.set_quota(total=None)
    write_file(fs.mountpoint / "g", bytes(10_000), sync=False)


def test_fallocate_extends_and_is_durable_with_the_file(fs: FaultMount) -> None:
    path = durable_file(fs, "f", b"head")
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, 1 << 20)
        assert os.fstat(fd).st_size == 1 << 20
        os.fsync(fd)
    finally:
        os.close(fd)
    fs.power_cut()
    data = path.read_bytes()
    assert len(data) == 1 << 20 and data[:4] == b"head" and not data[4:].strip(b"\0")


def test_commands_answer_fast(fs: FaultMount) -> None:
    for k in range(20):
        durable_file(fs, f"f{k}", bytes(64 * 1024))
    started = time.monotonic()
    fs.power_cut(torn=True)
    fs.fail_fsync(0)
    fs.set_quota(free=0)
    fs.status()
    assert time.monotonic() - started < 0.5


def test_a_stalled_fsync_waits_and_fails_with_eio_at_a_power_cut(fs: FaultMount) -> None:
    path = durable_file(fs, "f", b"old")
    fs.stall_fsync(True)
    outcome: list[BaseException | None] = []

    def sync_new_data() -> None:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.pwrite(fd, b"new", 0)
            os.fsync(fd)
            outcome.append(None)
        except OSError as e:
            outcome.append(e)
        finally:
            os.close(fd)

    worker = threading.Thread(target=sync_new_data)
    worker.start()
    time.sleep(0.3)
    assert not outcome, "the fsync must wait while the disk stalls"
    fs.power_cut()
    worker.join(5)
    assert isinstance(outcome[0], OSError) and outcome[0].errno == errno.EIO
    assert path.read_bytes() == b"old"
    fs.stall_fsync(True)
    worker = threading.Thread(target=sync_new_data)
    worker.start()
    time.sleep(0.2)
    fs.stall_fsync(False)
    worker.join(5)
    assert outcome[1] is None
    assert (fs.backing / "f").read_bytes() == b"new"
