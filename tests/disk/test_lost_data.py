"""A node whose synced log data is damaged (a bad sector, a misdirected write) restarts,
says so, helps elect no one until it has fetched what it lost, and fetches it from its peers
(protocol-aware recovery). Real processes; the damage is done to the stopped node's WAL."""

from __future__ import annotations

import time
from pathlib import Path

from raftkv.storage.fs import OS
from raftkv.storage.record import RecordType
from raftkv.storage.schema import BATCH_DECODER
from raftkv.storage.segment import list_segments, scan_segment

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


def _damage_last_entries_record(raft_dir: Path) -> int:
    """Flip a byte inside the last WAL record that holds entries (in the last segment);
    returns the first entry index it held."""
    _, path = list_segments(OS, raft_dir)[-1]
    buf = bytearray(path.read_bytes())
    with_entries = [
        (rec, batch)
        for rec in scan_segment(path, bytes(buf)).records
        if rec.rtype is RecordType.BATCH and (batch := BATCH_DECODER.decode(rec.payload)).entries
    ]
    rec, batch = with_entries[-1]
    buf[rec.offset + (rec.end - rec.offset) // 2] ^= 0xFF
    path.write_bytes(bytes(buf))
    return batch.entries[0].index


def _no_leader_for(nodes: list[Node], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for node in nodes:
            doc = node.status()
            assert doc["leader"] is None, f"{doc['id']} follows {doc['leader']}: {doc}"
        time.sleep(0.2)


def test_a_node_that_lost_synced_data_helps_elect_no_one_until_it_caught_up(
    tmp_path: Path,
) -> None:
    dirs = {nid: tmp_path / nid for nid in ("n1", "n2", "n3")}
    nodes, peers = make_nodes(tmp_path, dirs, ("--tick-ms", "50"))
    n1, n2, n3 = nodes
    with stopped_at_exit(nodes):
        leader = start_all(nodes, peers)
        for i in range(20):
            ok(leader.put(f"k{i}", b"v%d" % i))
        target = leader.status()["commit_index"]
        eventually(lambda: all(n.status()["applied_index"] >= target for n in nodes), 20.0)
        for node in nodes:
            assert node.stop() == 0
        lost = _damage_last_entries_record(n3.data_dir / "raft")

        # n3 (damaged) and n2 alone: n3 must not vote, so no leader is elected.
        n3.start(peers)
        n2.start(peers)
        n3.wait_up()
        n2.wait_up()
        out = n3.output()
        assert "LOST SYNCED DATA" in out and "voting for no one until then" in out, out
        doc = n3.status()
        assert 0 < doc["lost_from"] <= lost, doc
        assert [m["recovering"] for m in doc["members"] if m["id"] == "n3"] == [True]
        _no_leader_for([n2, n3], 4.0)  # several election timeouts

        # n1 comes back: n1 or n2 leads (both hold everything), and n3 catches up from it.
        n1.start(peers)
        n1.wait_up()
        leader = leader_of(nodes)
        assert leader is not n3
        ok(leader.put("after", b"yes"))
        eventually(lambda: n3.status()["lost_from"] == 0, 20.0, "n3 to recover")
        assert "recovered the log entries it had lost" in n3.output()
        assert "n3 lost synced log entries" in leader.output()
        target = leader.status()["commit_index"]
        eventually(lambda: n3.status()["applied_index"] >= target, 20.0, "n3 to catch up")
        for key, value in (("k0", b"v0"), ("k19", b"v19"), ("after", b"yes")):
            answer = n3.get(key, consistency="stale")
            assert answer is not None and (answer.status, answer.body) == (200, value), key
        # and it votes again: with n2 stopped, n1 and n3 elect a leader.
        other = n1 if leader is n2 else n2
        assert leader.stop() == 0
        assert leader_of([other, n3], 20.0) in (other, n3)
        answer = request("GET", n3.url + "/v1/status")
        assert answer is not None and answer.json()["lost_from"] == 0


def test_the_only_voter_that_lost_synced_data_refuses_to_start(tmp_path: Path) -> None:
    """With no other voter there is no copy to recover from: going on would drop entries a
    client was told were written. The node says so and exits."""
    nodes, peers = make_nodes(tmp_path, {"n1": tmp_path / "n1"}, ("--tick-ms", "50"))
    [n1] = nodes
    with stopped_at_exit(nodes):
        n1.start(peers)
        n1.wait_up()
        leader_of(nodes)
        for i in range(5):
            ok(n1.put(f"k{i}", b"v"))
        assert n1.stop() == 0
        _damage_last_entries_record(n1.data_dir / "raft")
        n1.start(peers)
        assert n1.wait_exit(20) != 0
        out = n1.output()
        assert "LOST SYNCED DATA" in out, out
        assert "is the only voter: no other node holds a copy" in out, out
