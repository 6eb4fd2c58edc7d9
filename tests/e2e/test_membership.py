"""End to end on real processes: a 3-node cluster grows to 5 (`cluster join` = `serve --join`,
then `member promote`) and shrinks back to 3 (`member remove`, the leader included) while a
client writes without pause; no acknowledged write is lost on any remaining node. A joined node
that was down while the log was compacted restarts knowing its peers and catches up by snapshot.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from raftkv.client import Client, RetryPolicy
from raftkv.devcluster.topology import load_topology
from raftkv.errors import RaftkvError, Timeout

from .harness import Cluster, _alive, free_base_port, raftkv, running_cluster
from .harness import http as raw_http

pytestmark = pytest.mark.timeout(150)

SNAPSHOT_ENTRIES = 150


class Writer(threading.Thread):
    """Puts w0, w1, ... until stopped, remembering which writes were acknowledged."""

    def __init__(self, endpoints: list[str]) -> None:
        super().__init__(daemon=True)
        self.endpoints = endpoints
        self.acked: dict[str, str] = {}
        self.unknown: list[str] = []
        self.failed = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with Client(self.endpoints, policy=RetryPolicy(timeout=15.0)) as kv:
            i = 0
            while not self.stop.is_set():
                key, value = f"w{i}", f"v{i}"
                try:
                    kv.put(key, value)
                except Timeout:
                    self.unknown.append(key)
                except RaftkvError:
                    self.failed += 1  # definitely not applied
                else:
                    self.acked[key] = value
                i += 1

    def wait_for(self, more: int, timeout: float = 30.0) -> None:
        target = len(self.acked) + more
        deadline = time.monotonic() + timeout
        while len(self.acked) < target:
            assert self.is_alive(), "the writer died"
            assert time.monotonic() < deadline, f"writes stalled at {len(self.acked)} acked"
            time.sleep(0.05)


def _members(c: Cluster) -> dict[str, str]:
    r = raftkv("member", "list", "--json", env=c.env)
    assert r.returncode == 0, r.stderr
    return {m["id"]: "voter" if m["voter"] else "learner" for m in json.loads(r.stdout)["members"]}


def _join(c: Cluster) -> str:
    r = raftkv("cluster", "join", "--data-dir", str(c.data_dir))
    assert r.returncode == 0, f"cluster join failed:\n{r.stdout}\n{r.stderr}"
    topo = load_topology(c.data_dir)
    assert topo is not None
    c.topology = topo
    return topo.nodes[-1].id


def _remove_leader(c: Cluster, node_id: str) -> None:
    pid = c.pid(node_id)
    r = raftkv("member", "remove", node_id, env=c.env)
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 10
    while _alive(pid):  # it shuts itself down once it applied its removal
        assert time.monotonic() < deadline, f"removed leader {node_id} is still running"
        time.sleep(0.05)


def _cluster_remove(c: Cluster, node_id: str) -> None:
    r = raftkv("cluster", "remove", node_id, "--data-dir", str(c.data_dir))
    assert r.returncode == 0, f"cluster remove failed:\n{r.stdout}\n{r.stderr}"
    topo = load_topology(c.data_dir)
    assert topo is not None and node_id not in {n.id for n in topo.nodes}
    c.topology = topo


def _snapshot_installs(c: Cluster, node_id: str) -> int:
    log = (c.data_dir / node_id / "node.log").read_text()
    return log.count("installed the leader's snapshot")


def _assert_every_write_on(c: Cluster, nodes: list[str], acked: dict[str, str]) -> None:
    leader = c.leader(among=nodes)
    st = c.status(leader)
    assert st is not None
    for node_id in nodes:
        deadline = time.monotonic() + 15
        while True:  # caught up with the leader's commit index of a moment ago
            mine = c.status(node_id)
            if mine is not None and mine["applied_index"] >= st["commit_index"]:
                break
            assert time.monotonic() < deadline, f"{node_id} did not catch up: {mine}"
            time.sleep(0.05)
        missing = []
        conn = http.client.HTTPConnection(urlsplit(c.url(node_id)).netloc, timeout=10)
        try:
            for key, value in acked.items():  # one kept-alive connection: thousands of reads
                conn.request("GET", f"/v1/kv/{key}?consistency=stale")
                resp = conn.getresponse()
                body = resp.read()
                if resp.status != 200 or body.decode() != value:
                    missing.append((key, resp.status))
        finally:
            conn.close()
        assert not missing, f"{node_id} lost {len(missing)} acknowledged writes: {missing[:5]}"


def test_grow_to_five_and_shrink_to_three_under_writes(tmp_path: Path) -> None:
    extra = ("--snapshot-entries", str(SNAPSHOT_ENTRIES))
    with running_cluster(tmp_path, 3, extra=extra) as c:
        base = c.topology.base_port
        every = [f"http://127.0.0.1:{base + 1000 + i}" for i in range(5)]  # n1..n5
        writer = Writer(every)
        writer.start()
        try:
            writer.wait_for(2 * SNAPSHOT_ENTRIES)  # the log is compacted before anyone joins

            # Grow: two learners join, catch up (by snapshot) and are promoted.
            for _ in range(2):
                node_id = _join(c)
                r = raftkv("member", "promote", node_id, "--wait-caught-up", "30", env=c.env)
                assert r.returncode == 0, r.stderr
                assert f"promoted {node_id} to voter" in r.stdout
                writer.wait_for(20)
            assert _members(c) == {f"n{i}": "voter" for i in range(1, 6)}
            assert _snapshot_installs(c, "n4") >= 1 and _snapshot_installs(c, "n5") >= 1

            # Shrink: remove the leader, then (with the dev tooling) one more founding node.
            first = c.leader()
            _remove_leader(c, first)
            writer.wait_for(20)
            second = next(n for n in ("n1", "n2", "n3") if n != first)
            _cluster_remove(c, second)
            writer.wait_for(20)
            rest = [n for n in ("n1", "n2", "n3", "n4", "n5") if n not in (first, second)]
            assert _members(c) == dict.fromkeys(rest, "voter")

            # A joined node down while the log moves on (and is compacted) comes back with
            # its peers from its own data dir and catches up by snapshot.
            before = _snapshot_installs(c, "n4")
            c.kill9("n4")
            writer.wait_for(3 * SNAPSHOT_ENTRIES)
            c.up()  # restarts n4 (its --join is ignored: it has joined), and the removed leader
            _remove_leftover(c, first)  # which finds itself removed and exits
            writer.wait_for(20)
        finally:
            writer.stop.set()
            writer.join(30)
        assert len(writer.acked) >= 5 * SNAPSHOT_ENTRIES
        _assert_every_write_on(c, rest, writer.acked)
        assert _snapshot_installs(c, "n4") > before
        st = raw_http("GET", c.url("n4") + "/v1/status")
        assert st.status == 200 and st.json()["leader"] in rest


def _remove_leftover(c: Cluster, node_id: str) -> None:
    """`cluster up` restarted a removed node (it is still in cluster.json): it finds its removal
    in its log and exits (unless a snapshot swallowed that entry: then it idles, a non-member,
    and is stopped here)."""
    pid = c.pid(node_id)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
    assert node_id not in _members(c)


def test_snapshot_save_then_restore_a_new_node_from_it(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 3) as c:
        with Client(c.endpoints) as kv:
            for i in range(50):
                kv.put(f"b{i}", f"value {i}")
        backup = tmp_path / "backup.snap"
        r = raftkv("snapshot", "save", str(backup), "--json", env=c.env)
        assert r.returncode == 0, r.stderr
        saved = json.loads(r.stdout)
        assert saved["keys"] == 50 and saved["voters"] == ["n1", "n2", "n3"]
    port = free_base_port(1)
    spec = f"r1=127.0.0.1:{port}@http://127.0.0.1:{port + 1000}"
    data_dir = tmp_path / "restored"
    restore = ["snapshot", "restore", str(backup), "--data-dir", str(data_dir), "--id", "r1"]
    r = raftkv(*restore, "--peers", spec)
    assert r.returncode == 0, r.stderr
    assert "50 keys" in r.stdout
    again = raftkv(*restore, "--peers", spec)
    assert again.returncode == 1 and "not empty" in again.stderr
    serve = [sys.executable, "-m", "raftkv.cli", "serve", "--id", "r1", "--data-dir",
             str(data_dir), "--listen", f"127.0.0.1:{port}", "--http",
             f"127.0.0.1:{port + 1000}", "--peers", spec]  # fmt: skip
    proc = subprocess.Popen(serve, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port + 1000}"
        with Client(url, policy=RetryPolicy(timeout=20.0)) as kv:
            got = kv.get("b49")  # a one-voter cluster of the restored data elects itself
            assert got is not None and got.text == "value 49"
            kv.put("after-restore", "yes")
        members = raw_http("GET", url + "/v1/members").json()["members"]
        assert [m["id"] for m in members] == ["r1"]
    finally:
        proc.terminate()
        proc.wait(10)
