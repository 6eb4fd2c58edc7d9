"""End to end, each test on its own 3-node cluster: kill -9 of the leader, a whole-cluster
restart, a partitioned leader, and a node that dies during `cluster up`."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from raftkv.client import Client, RetryPolicy
from raftkv.errors import RaftkvError, Timeout

from .harness import free_base_port, http, raftkv, running_cluster

pytestmark = pytest.mark.timeout(120)

NEW_LEADER_BOUND_S = 10.0  # election timeout is 0.5-1 s; pre-vote and check-quorum add rounds


class Writer(threading.Thread):
    """Puts k0, k1, ... until stopped, remembering which writes were acknowledged."""

    def __init__(self, endpoints: list[str]) -> None:
        super().__init__(daemon=True)
        self.endpoints = endpoints
        self.acked: dict[str, str] = {}
        self.unknown: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with Client(self.endpoints, policy=RetryPolicy(timeout=15.0)) as kv:
            i = 0
            while not self.stop.is_set():
                key, value = f"k{i}", f"v{i}"
                try:
                    kv.put(key, value)
                except Timeout:
                    self.unknown.append(key)  # may or may not have committed
                except RaftkvError:
                    pass  # definitely not applied
                else:
                    self.acked[key] = value
                i += 1


def assert_all_present(endpoints: list[str], acked: dict[str, str]) -> None:
    with Client(endpoints) as kv:
        missing = []
        for key, value in acked.items():
            got = kv.get(key)
            if got is None or got.text != value:
                missing.append((key, value, got))
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"


def test_kill9_leader_elects_a_new_leader_and_keeps_every_acknowledged_write(
    tmp_path: Path,
) -> None:
    with running_cluster(tmp_path) as cluster:
        writer = Writer(cluster.endpoints)
        writer.start()
        time.sleep(1.0)
        old = cluster.leader()
        acked_before_kill = len(writer.acked)
        cluster.kill9(old)
        killed_at = time.monotonic()
        survivors = [n.id for n in cluster.topology.nodes if n.id != old]
        new = cluster.leader(among=survivors, timeout=NEW_LEADER_BOUND_S)
        elected_after = time.monotonic() - killed_at
        time.sleep(1.0)  # keep writing under the new leader
        writer.stop.set()
        writer.join(30)
        assert not writer.is_alive()
        assert new != old and elected_after < NEW_LEADER_BOUND_S
        assert acked_before_kill > 0 and len(writer.acked) > acked_before_kill
        live = [cluster.url(n) for n in survivors]
        assert_all_present(live, writer.acked)
        r = raftkv("status", "--endpoints", ",".join(cluster.endpoints))
        assert r.returncode == 0 and "unreachable" in r.stdout


def test_whole_cluster_restart_keeps_every_acknowledged_write(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as cluster:
        acked: dict[str, str] = {}
        with Client(cluster.endpoints) as kv:
            for i in range(50):
                kv.put(f"r{i}", f"value-{i}")
                acked[f"r{i}"] = f"value-{i}"
            kv.delete("r0")
            del acked["r0"]
            revision = kv.put("last", "x").revision
        acked["last"] = "x"
        down = cluster.down()
        assert down.returncode == 0 and down.stdout.count("stopped") == 3, down.stdout
        assert not list(cluster.data_dir.glob("*/node.pid"))
        r = cluster.up()
        assert "n1  http://127.0.0.1:" in r.stdout
        assert_all_present(cluster.endpoints, acked)
        with Client(cluster.endpoints) as kv:
            assert kv.get("r0") is None
            got = kv.get("last")
            assert got is not None and got.revision == revision
            assert kv.put("after-restart", "y").revision == revision + 1


def test_partitioned_leader_cannot_serve_a_linearizable_read(tmp_path: Path) -> None:
    with running_cluster(tmp_path, fault_injection=True) as cluster:
        with Client(cluster.endpoints) as kv:
            kv.put("x", "before")
        old = cluster.leader()
        old_url = cluster.url(old)
        r = http("POST", old_url + "/v1/debug/net", json.dumps({"isolate": True}).encode())
        assert r.status == 200, r.body
        # The majority side elects a new leader and moves on.
        others = [n.id for n in cluster.topology.nodes if n.id != old]
        new = cluster.leader(among=others, timeout=NEW_LEADER_BOUND_S)
        with Client([cluster.url(n) for n in others]) as kv:
            kv.put("x", "after")
        # The old leader must not answer a linearizable read (it would be stale).
        r = http("GET", old_url + "/v1/kv/x?consistency=linearizable", timeout=15)
        assert r.status in (503, 504), (r.status, r.body)
        assert json.loads(r.body)["error"] in ("no_leader", "no_quorum", "timeout")
        # Once healed, it learns the new value.
        http("POST", old_url + "/v1/debug/net", json.dumps({"heal": True}).encode())
        deadline = time.monotonic() + 10
        while http("GET", old_url + "/v1/kv/x?consistency=stale").body != b"after":
            assert time.monotonic() < deadline, "the healed node never caught up"
            time.sleep(0.05)
        assert new != old


def test_fault_injection_is_off_by_default(tmp_path: Path) -> None:
    with running_cluster(tmp_path, nodes=1) as cluster:
        r = http("POST", cluster.endpoints[0] + "/v1/debug/net", b'{"isolate": true}')
        assert r.status == 404


def test_cluster_up_reports_a_node_that_dies_with_its_log(tmp_path: Path) -> None:
    data_dir = tmp_path / "c"
    node_dir = data_dir / "n2"
    node_dir.mkdir(parents=True)
    # n2's directory belongs to another cluster: that node refuses to start.
    (node_dir / "identity.json").write_text('{"cluster_id": "other", "node_id": "n2"}\n')
    try:
        r = raftkv(
            "cluster",
            "up",
            "--nodes",
            "3",
            "--data-dir",
            str(data_dir),
            "--base-port",
            str(free_base_port(3)),
        )
        assert r.returncode == 1
        assert "node n2 exited with code 1 during startup" in r.stderr
        assert "cluster 'other'" in r.stderr  # the tail of n2's node.log
        assert "Traceback" not in r.stderr.split("node.log")[0]
    finally:
        raftkv("cluster", "down", "--data-dir", str(data_dir), "--kill-after", "5")
