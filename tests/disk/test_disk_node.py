"""Real `raftkv serve` processes on small and full volumes (tmpfs: a real ENOSPC).

- a node says why it cannot start on a volume smaller than a WAL segment, and works there
  with smaller segments;
- disk full: writes answer 507 insufficient_storage, reads keep working, writes resume once
  space is freed, nothing acknowledged is lost;
- a follower whose disk is full does not acknowledge and catches up once space returns,
  while the rest of the cluster goes on writing;
- a snapshot that cannot be written does not stop the node, nor its restart.
"""

from __future__ import annotations

from pathlib import Path

from .conftest import Volume
from .nodes import (
    Node,
    eventually,
    leader_of,
    make_nodes,
    ok,
    request,
    start_all,
    stopped_at_exit,
)
from .volumes import fill

KIB = 1024


def _one_node(tmp_path: Path, data_dir: Path, *extra: str) -> Node:
    nodes, _ = make_nodes(tmp_path, {"n1": data_dir}, extra)
    return nodes[0]


def test_small_volume_says_why_it_cannot_start_and_works_with_smaller_segments(
    tmp_path: Path, volume: Volume
) -> None:
    vol = volume("vol", 32)
    node = _one_node(tmp_path, vol / "n1")
    with stopped_at_exit([node]):
        node.start()
        assert node.wait_exit() == 1
        out = node.output()
        segment = vol / "n1" / "raft" / "wal-0000000001.log"
        assert f"node n1: cannot preallocate WAL segment {segment} (64 MiB)" in out, out
        assert "No space left on device" in out and "MiB free" in out, out
        assert "--wal-segment-mb" in out, out
        assert not list(vol.rglob("*.tmp")), list(vol.rglob("*"))

        # With 4 MiB segments it runs, and writes more than the volume holds (compaction).
        node.extra = ("--wal-segment-mb", "4", "--snapshot-entries", "100")
        node.start()
        node.wait_up()
        leader_of([node])
        values = {}
        for i in range(600):  # 600 x 64 KiB = 37.5 MiB through a 32 MiB volume
            key, value = f"k{i % 40}", bytes([i % 251]) * (64 * KIB)
            answer = node.put(key, value)
            assert answer is not None and answer.status == 200, answer
            values[key] = value
        assert node.stop() == 0
        node.start()
        node.wait_up()
        leader_of([node])
        for key, value in values.items():
            answer = node.get(key)
            assert answer is not None and (answer.status, answer.body) == (200, value), key


def test_disk_full_refuses_writes_with_507_keeps_reads_and_resumes(
    tmp_path: Path, volume: Volume
) -> None:
    vol = volume("vol", 16)
    node = _one_node(
        tmp_path,
        vol / "n1",
        "--wal-segment-mb",
        "1",
        "--snapshot-entries",
        "0",
        "--snapshot-bytes",
        "0",
    )
    with stopped_at_exit([node]):
        node.start()
        node.wait_up()
        leader_of([node])
        acked: dict[str, bytes] = {}
        for i in range(3):
            ok(node.put(f"k{i}", b"before"))
            acked[f"k{i}"] = b"before"
        filler = fill(vol)
        refused = None
        for i in range(3, 100):
            value = bytes([i]) * (32 * KIB)
            answer = node.put(f"k{i}", value)
            assert answer is not None, f"the node stopped answering:\n{node.output()}"
            if answer.status != 200:
                refused = answer
                break
            acked[f"k{i}"] = value
        assert refused is not None, "no write was refused on a full disk"
        assert refused.status == 507, (refused, node.output())
        doc = refused.json()
        assert doc["error"] == "insufficient_storage"
        assert doc["message"].startswith("node n1: no room in the WAL"), doc
        assert "No space left on device" in doc["message"]
        assert refused.headers.get("Retry-After") == "1"
        assert len(acked) > 10  # the first segment took writes before the disk ran out

        # Reads keep working; the node keeps running and says so.
        for key in ("k0", max(acked, key=lambda k: int(k[1:]))):
            answer = node.get(key)
            assert answer is not None and (answer.status, answer.body) == (200, acked[key])
        assert node.status()["role"] == "leader"
        assert node.metric("raftkv_storage_room_refusals_total") >= 1

        filler.unlink()  # space returns: writes go through again (after the retry backoff)

        def write_resumes() -> bool:
            answer = node.put("after", b"z" * 32 * KIB)  # as big as the refused write
            return answer is not None and answer.status == 200

        eventually(write_resumes, 10.0, "writes to resume")
        acked["after"] = b"z" * 32 * KIB
        for i in range(40):  # well past the first segment
            ok(node.put(f"m{i}", b"x" * 32 * KIB))
            acked[f"m{i}"] = b"x" * 32 * KIB

        assert node.stop() == 0  # nothing was corrupted: a restart has every acked write
        node.start()
        node.wait_up()
        leader_of([node])
        for key, value in acked.items():
            answer = node.get(key)
            assert answer is not None and (answer.status, answer.body) == (200, value), key
        assert "torn tail" not in node.output()


def test_follower_with_a_full_disk_does_not_acknowledge_and_catches_up(
    tmp_path: Path, volume: Volume
) -> None:
    dirs = {nid: volume(nid, 16) / "data" for nid in ("n1", "n2", "n3")}
    flags = ("--wal-segment-mb", "1", "--snapshot-entries", "0", "--snapshot-bytes", "0")
    nodes, peers = make_nodes(tmp_path, dirs, flags)
    with stopped_at_exit(nodes):
        leader = start_all(nodes, peers)
        full = next(n for n in nodes if n is not leader)
        filler = fill(full.data_dir.parent)
        value = b"v" * (32 * KIB)
        for i in range(80):  # 2.5 MiB: far more than the full follower's WAL has room for
            answer = leader.put(f"k{i}", value)
            assert answer is not None and answer.status == 200, (answer, full.output())
        assert full.poll() is None, f"the full follower stopped:\n{full.output()}"
        assert full.status()["last_index"] < leader.status()["last_index"]
        assert "dropping AppendEntries" in full.output()
        answer = full.get("k0", consistency="stale")  # it still serves what it has
        assert answer is not None and (answer.status, answer.body) == (200, value)

        filler.unlink()
        target = leader.status()["commit_index"]

        def caught_up() -> bool:
            return bool(full.status()["applied_index"] >= target)

        eventually(caught_up, 20.0, "the follower to catch up")
        answer = full.get("k79", consistency="stale")
        assert answer is not None and (answer.status, answer.body) == (200, value)
        assert all(n.poll() is None for n in nodes)


def test_snapshot_that_cannot_be_written_does_not_stop_the_node(
    tmp_path: Path, volume: Volume
) -> None:
    vol = volume("vol", 24)
    node = _one_node(tmp_path, vol / "n1", "--wal-segment-mb", "8", "--snapshot-entries", "20")
    with stopped_at_exit([node]):
        node.start()
        node.wait_up()
        leader_of([node])
        filler = fill(vol, leave=512 * KIB)
        acked = {}
        for i in range(40):  # 4 MiB of values: the snapshot at entry 20 or so cannot fit
            key, value = f"k{i}", bytes([i]) * (100 * KIB)
            answer = node.put(key, value)
            assert answer is not None and answer.status == 200, (answer, node.output())
            acked[key] = value
        eventually(lambda: node.metric("raftkv_storage_snapshot_failures_total") >= 1)
        out = node.output()
        assert "not written, the node keeps its log and serves on" in out, out
        assert "node n1: cannot write snapshot" in out and "No space left on device" in out
        assert node.poll() is None
        assert not list(vol.rglob("*.snap.tmp"))
        answer = node.get("k39")
        assert answer is not None and (answer.status, answer.body) == (200, acked["k39"])

        # A restart on the still-full disk starts and serves (no crash loop) ...
        assert node.stop() == 0
        node.start()
        node.wait_up()
        leader_of([node])
        for key, value in acked.items():
            answer = node.get(key)
            assert answer is not None and (answer.status, answer.body) == (200, value), key
        answer = node.put("after-restart", b"ok")
        assert answer is not None and answer.status == 200
        # ... and once space is back, the next write after the retry backoff snapshots.
        filler.unlink()

        def snapshotted() -> bool:
            answer = node.put("later", b"ok")
            assert answer is not None and answer.status == 200
            return node.metric("raftkv_snapshot_index") > 0

        eventually(snapshotted, 20.0, "a snapshot")
        assert node.poll() is None
        answer = request("GET", node.url + "/v1/kv/k0")
        assert answer is not None and (answer.status, answer.body) == (200, acked["k0"])


def test_corrupt_newest_snapshot_refuses_to_start_naming_node_and_file(tmp_path: Path) -> None:
    node = _one_node(tmp_path, tmp_path / "n1", "--snapshot-entries", "5")
    with stopped_at_exit([node]):
        node.start()
        node.wait_up()
        leader_of([node])
        for i in range(12):
            ok(node.put(f"k{i}", b"v"))
        eventually(lambda: node.metric("raftkv_snapshot_index") >= 10, 10.0, "two snapshots")
        assert node.stop() == 0
        snaps = sorted((tmp_path / "n1" / "raft").glob("snap-*.snap"))
        assert len(snaps) >= 2
        newest = snaps[-1]
        data = bytearray(newest.read_bytes())
        data[-3] ^= 0x5A  # one flipped byte in the newest snapshot's payload
        newest.write_bytes(bytes(data))
        node.start()
        assert node.wait_exit() == 1
        out = node.output().split("===")[-1]  # this start only
        assert f"node n1: {newest.name}: checksum mismatch ({newest}, offset 8)" in out, out
