"""raftkv's own LogStorage on faultfs: what it synced survives a power cut, a torn last record
is cut off as a torn tail, a failed fsync stops it (fail-stop) without losing what was synced
before, and a restart after a failed fsync makes durable what it reads back."""

from __future__ import annotations

import os

import pytest

from raftkv.core.types import Entry, HardState, Snapshot
from raftkv.errors import DiskError
from raftkv.faultfs import FaultMount
from raftkv.storage import LogStorage


def entries(lo: int, hi: int, term: int = 1) -> list[Entry]:
    return [Entry(term, i, data=b"entry-%d;" % i * 20) for i in range(lo, hi + 1)]


def test_everything_saved_survives_a_power_cut(fs: FaultMount) -> None:
    d = fs.mountpoint / "raft"
    storage, _ = LogStorage.open(d, segment_bytes=64 * 1024)  # several segments
    for i in range(1, 301):
        storage.save(HardState(1, "n1", i - 1), entries(i, i))
    storage.install_snapshot(Snapshot(100, 1, b"state at 100", ("n1",)))
    storage.compact(100)
    fs.power_cut()
    storage.close()
    storage, rec = LogStorage.open(d, segment_bytes=64 * 1024)
    with storage:
        assert rec.snapshot is not None and rec.snapshot.index == 100
        assert [e.index for e in rec.entries] == list(range(101, 301))
        assert rec.entries == entries(101, 300)
        assert rec.hard_state == HardState(1, "n1", 299)
        assert rec.torn_tail is None


def test_a_torn_last_record_is_truncated_as_a_torn_tail(fs: FaultMount) -> None:
    d = fs.mountpoint / "raft"
    storage, _ = LogStorage.open(d)
    storage.save(HardState(1, "n1", 0), entries(1, 10))
    storage.close()
    # Writes that never get synced: the newest is torn at the power cut.
    storage, _ = LogStorage.open(d, sync=False)
    for i in range(11, 16):
        storage.save(None, entries(i, i))
    report = fs.power_cut(torn=True)
    storage.close()
    assert report["torn"] is not None and report["torn"]["file"].startswith("raft/wal-")
    storage, rec = LogStorage.open(d)
    with storage:
        assert rec.torn_tail is not None, "the torn record must be reported"
        # The synced entries are all there; of the unsynced ones, a prefix (the tear
        # persists the writes before the torn one).
        got = [e.index for e in rec.entries]
        assert got == list(range(1, 15)), got
        storage.save(None, entries(15, 15))  # and it goes on writing after the cut-off tail
    storage, rec = LogStorage.open(d)
    with storage:
        assert [e.index for e in rec.entries] == list(range(1, 16))
        assert rec.torn_tail is None


def test_a_failed_fsync_stops_the_storage_and_loses_nothing_synced(fs: FaultMount) -> None:
    d = fs.mountpoint / "raft"
    storage, _ = LogStorage.open(d)
    storage.save(HardState(2, "n1", 5), entries(1, 20))
    fs.fail_fsync(1)
    with pytest.raises(DiskError, match="Input/output error"):
        storage.save(None, entries(21, 21))
    with pytest.raises(DiskError, match="failed earlier"):  # fail-stop: never retried
        storage.save(None, entries(21, 21))
    fs.power_cut()
    storage.close()
    storage, rec = LogStorage.open(d)
    with storage:
        assert [e.index for e in rec.entries] == list(range(1, 21))
        assert rec.hard_state == HardState(2, "n1", 5)


def test_the_wal_preallocates_through_fallocate_on_the_mount(fs: FaultMount) -> None:
    storage, _ = LogStorage.open(fs.mountpoint / "raft", segment_bytes=1 << 20)
    with storage:
        storage.save(HardState(1, "n1", 0), entries(1, 3))
        (seg,) = [p for p in (fs.mountpoint / "raft").iterdir() if p.name.startswith("wal-")]
        assert os.stat(seg).st_size == 1 << 20
        assert storage.stats.zero_fill_bytes > 0  # the zero fill goes through the FS too


def test_restart_after_a_failed_fsync_then_a_power_cut_keeps_what_was_synced(
    fs: FaultMount,
) -> None:
    """Issue 18 item 4: an fsync fails with EIO and the node stops (fail-stop); it restarts
    without a power cut and recovery reads the record whose fsync failed from the page cache
    (Linux keeps it readable but never writes it back). Recovery rewrites and syncs what no
    durable record attests, so that record becomes durable before the node uses it: the
    records synced after it survive a later power cut, and so does it. (It used to leave a
    hole that recovery then refused as corruption: the node could never restart.)"""
    d = fs.mountpoint / "raft"
    storage, _ = LogStorage.open(d)
    for i in range(1, 6):
        storage.save(HardState(1, "n1", i - 1), entries(i, i))
    fs.fail_fsync(1)
    with pytest.raises(DiskError):
        storage.save(None, entries(6, 6))  # never durable (Linux keeps it only in the cache)
    storage.close()
    storage, rec = LogStorage.open(d)  # the node restarts (fail-stop, then restart)
    assert [e.index for e in rec.entries] == list(range(1, 7))  # 6 is read from the cache
    for i in range(7, 10):
        storage.save(None, entries(i, i))  # synced: this node may acknowledge them
    storage.close()
    fs.power_cut()
    storage, rec = LogStorage.open(d)
    with storage:
        assert rec.entries == entries(1, 9)
        assert (rec.torn_tail, rec.lost_data) == (None, None)
