"""`raftkv cluster up` on a small or full disk: it names the node and the file, says why, and
leaves no stale pid file (or process) behind."""

from __future__ import annotations

from pathlib import Path

from e2e.harness import free_base_port, raftkv
from raftkv.devcluster.process import running_pid

from .conftest import Volume
from .volumes import fill


def _no_pid_files_or_processes(cluster: Path) -> None:
    pid_files = sorted(cluster.glob("*/node.pid"))
    assert not pid_files, f"stale pid files: {pid_files}"
    assert all(running_pid(d) is None for d in cluster.glob("n*"))


def test_cluster_up_on_a_disk_too_small_for_a_segment(tmp_path: Path, volume: Volume) -> None:
    vol = volume("vol", 40)
    fill(vol, leave=12 * 1024 * 1024)
    cluster = vol / "cluster"
    base = str(free_base_port(3))
    try:
        r = raftkv(
            "cluster",
            "up",
            "--data-dir",
            str(cluster),
            "--base-port",
            base,
            "--leader-timeout",
            "20",
        )
        assert r.returncode == 1, r
        for nid in ("n1", "n2", "n3"):
            segment = cluster / nid / "raft" / "wal-0000000001.log"
            assert f"node {nid} exited with code 1 during startup" in r.stderr, r.stderr
            assert f"node {nid}: cannot preallocate WAL segment {segment} (64 MiB)" in r.stderr
        assert "No space left on device" in r.stderr and "--wal-segment-mb" in r.stderr
        _no_pid_files_or_processes(cluster)
        assert not list(cluster.rglob("*.tmp"))

        # The same command with smaller segments starts the same cluster.
        r = raftkv("cluster", "up", "--data-dir", str(cluster), "--wal-segment-mb", "2")
        assert r.returncode == 0, r.stderr
        assert "leader n" in r.stdout
    finally:
        raftkv("cluster", "down", "--data-dir", str(cluster), "--kill-after", "5")
    _no_pid_files_or_processes(cluster)


def test_cluster_up_on_a_full_disk_names_the_file(tmp_path: Path, volume: Volume) -> None:
    vol = volume("vol", 8)
    cluster = vol / "cluster"
    cluster.mkdir()
    fill(vol)
    r = raftkv("cluster", "up", "--data-dir", str(cluster), "--base-port", "24000")
    assert r.returncode == 1, r
    assert f"cannot write {cluster / 'cluster.json'}: No space left on device" in r.stderr, r
    assert not list(cluster.rglob("*.tmp")) and not (cluster / "cluster.json").exists()
    _no_pid_files_or_processes(cluster)


def test_cluster_restart_on_a_full_disk_names_node_and_log(tmp_path: Path, volume: Volume) -> None:
    vol = volume("vol", 24)
    cluster = vol / "cluster"
    base = str(free_base_port(1))
    try:
        r = raftkv(
            "cluster", "up", "--data-dir", str(cluster), "--nodes", "1", "--base-port", base,
            "--wal-segment-mb", "1",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert raftkv("cluster", "down", "--data-dir", str(cluster)).returncode == 0
        fill(vol)
        r = raftkv("cluster", "up", "--data-dir", str(cluster))
        assert r.returncode == 1, r
        # Which of its files it fails on depends on the space left in node.log's last page.
        files = [cluster / "n1" / name for name in ("node.log", "node.pid")]
        wanted = [f"node n1: cannot write {f}: No space left on device" for f in files]
        assert any(w in r.stderr for w in wanted), r.stderr
        _no_pid_files_or_processes(cluster)
    finally:
        raftkv("cluster", "down", "--data-dir", str(cluster), "--kill-after", "5")
