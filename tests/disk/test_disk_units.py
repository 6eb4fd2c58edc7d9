"""The contract around disk trouble: 507 insufficient_storage in the shared HTTP error mapping,
the WAL segment size setting with its validation (serve flag, NodeSettings, NodeOptions), and
the retry policy of snapshots that cannot be written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raftkv import cli
from raftkv.core.types import Entry, Snapshot
from raftkv.embed.options import NodeOptions
from raftkv.errors import BadRequest, DiskError, DiskFull
from raftkv.runtime.http_errors import from_exception
from raftkv.runtime.settings import NodeSettings, PeerAddress
from raftkv.storage import LogStorage

from .conftest import Volume
from .volumes import fill


def test_disk_full_is_507_insufficient_storage_and_a_failed_disk_still_503() -> None:
    full = from_exception(DiskFull("node n1: no room in the WAL"))
    assert full.status == 507
    assert json.loads(full.body) == {
        "error": "insufficient_storage",
        "message": "node n1: no room in the WAL",
    }
    assert full.headers["Retry-After"] == "1"
    failed = from_exception(DiskError("node n1: save failed"))
    assert failed.status == 503 and b"disk_error" in failed.body


def _settings(tmp_path: Path, **kw: int) -> NodeSettings:
    peers = {"n1": PeerAddress("127.0.0.1", 1, "http://127.0.0.1:2")}
    return NodeSettings("n1", tmp_path, ("127.0.0.1", 1), ("127.0.0.1", 2), peers, **kw)  # type: ignore[arg-type]


def test_wal_segment_size_setting(tmp_path: Path) -> None:
    assert _settings(tmp_path).wal_segment_bytes == 64 * 1024 * 1024  # the default
    assert _settings(tmp_path, wal_segment_mb=4).wal_segment_bytes == 4 * 1024 * 1024
    for bad in (0, 1025):
        with pytest.raises(BadRequest, match=r"--wal-segment-mb\) must be in 1\.\.1024"):
            _settings(tmp_path, wal_segment_mb=bad)
        with pytest.raises(BadRequest, match="wal_segment_mb"):
            NodeOptions(wal_segment_mb=bad)


def test_serve_rejects_a_bad_segment_size(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["serve", "--id", "n1", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:1"]
    code = cli.main([*argv, "--http", "127.0.0.1:2", "--wal-segment-mb", "4096"])
    err = capsys.readouterr().err
    assert code == 2 and "--wal-segment-mb) must be in 1..1024 (MiB), got 4096" in err


def test_a_snapshot_file_that_does_not_fit_changes_nothing(volume: Volume) -> None:
    """Out of space, writing our own snapshot's file raises DiskFull and the storage keeps
    working (the driver then retries after a backoff: tests/driver); once space is freed the
    same snapshot is written and marked."""
    vol = volume("vol", 8)
    storage, _ = LogStorage.open(vol / "raft", node_id="n1", segment_bytes=1024 * 1024)
    try:
        storage.save(None, [Entry(1, 1, data=b"x")])
        filler = fill(vol)
        snap = Snapshot(1, 1, b"s" * 64 * 1024)
        with pytest.raises(DiskFull):
            storage.write_snapshot_file(snap)
        assert storage.failed is None and storage.first_index() == 1
        filler.unlink()
        storage.write_snapshot_file(snap)
        storage.mark_snapshot(snap)
        assert storage.stats.snapshot_failures == 1 and storage.first_index() == 2
    finally:
        storage.close()
