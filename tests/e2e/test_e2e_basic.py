"""End to end, on one shared 3-node cluster (real processes, fsync): the CLI, forwarding from
followers, status, and exactly-once retries. Nothing here kills or partitions a node."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from raftkv.client import Client

from .harness import Cluster, http, raftkv, running_cluster

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("basic")) as c:
        yield c


def test_cli_put_then_get(cluster: Cluster) -> None:
    r = raftkv("put", "x", "99", env=cluster.env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("OK (revision ")
    r = raftkv("get", "x", env=cluster.env)
    assert (r.returncode, r.stdout, r.stderr) == (0, "99\n", "")
    r = raftkv("get", "x", "--consistency", "stale", "--endpoints", cluster.endpoints[2])
    assert r.stdout == "99\n"


def test_cluster_up_again_is_a_no_op(cluster: Cluster) -> None:
    r = cluster.up()
    assert r.stderr.count("already running") == 3
    assert f"export RAFTKV_ENDPOINTS={','.join(cluster.endpoints)}" in r.stdout


def test_put_on_a_follower_is_readable_on_every_node(cluster: Cluster) -> None:
    leader = cluster.leader()
    follower = next(n.id for n in cluster.topology.nodes if n.id != leader)
    with Client(cluster.url(follower)) as kv:  # this client knows only the follower
        written = kv.put("via-follower", "hello")
    for node in cluster.topology.nodes:
        with Client(node.http_url) as kv:
            got = kv.get("via-follower")  # linearizable
            assert got is not None and got.value == b"hello"
        deadline = time.monotonic() + 5
        while True:  # and in each node's own state machine (a stale read is local)
            r = http("GET", node.http_url + "/v1/kv/via-follower?consistency=stale")
            if r.status == 200:
                break
            assert time.monotonic() < deadline, f"{node.id} never applied the write"
            time.sleep(0.05)
        assert r.body == b"hello"
        assert r.headers["X-Raftkv-Revision"] == str(written.revision)


def test_status_json_is_one_object_with_every_node(cluster: Cluster) -> None:
    r = raftkv("status", "--json", env=cluster.env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("\n") == 1
    doc = json.loads(r.stdout)
    assert set(doc) == {"leader", "nodes"}
    assert [n["endpoint"] for n in doc["nodes"]] == cluster.endpoints  # every node, in order
    statuses = [n["status"] for n in doc["nodes"]]
    for st in statuses:  # each node's GET /v1/status, with the design fields
        assert set(st) >= {
            "id",
            "role",
            "term",
            "leader",
            "commit_index",
            "applied_index",
            "last_index",
            "members",
        }
    leader = next(st for st in statuses if st["role"] == "leader")
    assert doc["leader"] == leader["id"] == leader["leader"]
    assert {m["id"] for m in leader["members"]} == {"n1", "n2", "n3"}
    for m in leader["members"]:
        assert set(m) >= {"id", "role", "match_index", "reachable"}
    table = raftkv("status", env=cluster.env)
    assert table.returncode == 0 and table.stdout.count("leader") >= 1


def _put(
    url: str, key: str, value: bytes, client: str, seq: int
) -> tuple[int, dict[str, str], bytes]:
    r = http(
        "PUT",
        f"{url}/v1/kv/{key}",
        value,
        {"X-Raftkv-Client": client, "X-Raftkv-Seq": str(seq), "X-Raftkv-Ack": str(seq)},
    )
    return r.status, r.headers, r.body


def _send_and_hang_up(url: str, key: str, value: bytes, client: str, seq: int) -> None:
    """Send a PUT and close the connection without reading: the response is lost."""
    parts = urlsplit(url)
    head = (
        f"PUT /v1/kv/{key} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Length: {len(value)}\r\n"
        f"X-Raftkv-Client: {client}\r\nX-Raftkv-Seq: {seq}\r\nX-Raftkv-Ack: {seq}\r\n\r\n"
    )
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as s:
        s.sendall(head.encode() + value)


def _open_session(url: str) -> str:
    r = http("POST", f"{url}/v1/sessions", b"")
    assert r.status == 200, r.body
    client_id: str = r.json()["client_id"]
    return client_id


def test_retried_write_after_a_dropped_response_applies_once(cluster: Cluster) -> None:
    leader = cluster.url(cluster.leader())
    follower = next(u for u in cluster.endpoints if u != leader)
    before_id, dedupe_id, after_id = (_open_session(u) for u in (leader, follower, leader))
    before = json.loads(_put(leader, "dedupe-before", b"0", before_id, 1)[2])["revision"]

    _send_and_hang_up(leader, "dedupe", b"once", dedupe_id, 1)
    time.sleep(0.3)
    status, _, body = _put(leader, "dedupe", b"once", dedupe_id, 1)  # the retry
    assert status == 200, body
    revision = json.loads(body)["revision"]
    assert revision == before + 1  # applied exactly once, by whichever attempt came first

    # The same seq once more, through a follower this time: answered from the session.
    status, headers, body = _put(follower, "dedupe", b"once", dedupe_id, 1)
    assert status == 200 and json.loads(body)["revision"] == revision
    assert headers.get("X-Raftkv-Duplicate") == "true"

    after = json.loads(_put(leader, "dedupe-after", b"2", after_id, 1)[2])["revision"]
    assert after == revision + 1  # the store's revision moved once for the three attempts
    r = http("GET", f"{leader}/v1/kv/dedupe")
    assert r.body == b"once" and r.headers["X-Raftkv-Revision"] == str(revision)
