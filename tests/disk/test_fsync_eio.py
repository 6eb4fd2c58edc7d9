"""An fsync that fails with EIO stops the node (fail-stop), which never retries it; the rest of
the cluster goes on, and the node restarts cleanly and catches up from its peers.

Real processes; the fault is injected into one node's fdatasync calls (fsync_fault_node.py),
since no device here can be made to fail (no device mapper)."""

from __future__ import annotations

import json
from pathlib import Path

from .nodes import FAULT_NODE, eventually, leader_of, make_nodes, ok, request, stopped_at_exit


def test_fsync_eio_stops_the_node_which_restarts_and_catches_up(tmp_path: Path) -> None:
    control = tmp_path / "control"
    control.mkdir()
    dirs = {nid: tmp_path / nid for nid in ("n1", "n2", "n3")}
    nodes, peers = make_nodes(tmp_path, dirs, ("--tick-ms", "50"))
    n1, n2, n3 = nodes
    with stopped_at_exit(nodes):
        n1.start(peers)
        n2.start(peers)
        n3.start(peers, launcher=(str(FAULT_NODE), str(control)))
        for node in nodes:
            node.wait_up()
        leader = leader_of(nodes)
        if leader is n3:  # the failing node is to be a follower: hand leadership to n1
            answer = request(
                "POST", n3.url + "/v1/leader/transfer", json.dumps({"to": "n1"}).encode()
            )
            assert answer is not None and answer.status == 200, answer
            leader = leader_of(nodes)
        for i in range(10):
            ok(leader.put(f"k{i}", b"before"))

        (control / "fail-fsync").touch()
        for i in range(10, 30):  # n1 and n2 are a quorum: writes go on
            answer = leader.put(f"k{i}", b"during")
            assert answer is not None and answer.status == 200, answer
        assert n3.wait_exit(15) == 1
        out = n3.output()
        assert "wal-" in (control / "failed").read_text()
        assert "DISK FAILURE, node stops acknowledging" in out, out
        assert "node n3: sync failed on" in out and "Input/output error" in out, out
        assert not (control / "retries").exists(), (control / "retries").read_text()

        n3.start(peers)  # the disk is "fixed": the plain binary on the same data
        n3.wait_up()
        for i in range(30, 35):
            ok(leader.put(f"k{i}", b"after"))
        target = leader.status()["commit_index"]
        eventually(lambda: n3.status()["applied_index"] >= target, 20.0, "n3 to catch up")
        for key, value in (("k0", b"before"), ("k29", b"during"), ("k34", b"after")):
            answer = n3.get(key, consistency="stale")
            assert answer is not None and (answer.status, answer.body) == (200, value), key
        assert all(n.poll() is None for n in nodes)
