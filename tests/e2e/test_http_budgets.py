"""Watch streams, clients and forwarded requests have separate connection budgets, and
/healthz always answers (issue #15, item 4), on real `raftkv serve` processes.

Before: watch streams counted against the leader's --max-connections and were never reaped,
followers forward writes to the leader over HTTP and passed its 503 back, so enough watch
streams on the leader took every write in the cluster down, and /healthz with them.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from .harness import Cluster, http, serving_cluster

pytestmark = pytest.mark.timeout(120)

LIMIT = 16  # --max-connections for the test (1024 by default)


class Conn:
    """A raw HTTP/1.1 connection, to hold it open and read what arrives on it."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=5)
        self.buf = b""

    def send(self, method: str, target: str, body: bytes = b"") -> None:
        head = f"{method} {target} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n"
        self.sock.sendall(head.encode() + body)

    def status(self) -> tuple[int, bytes]:
        """The status of the answer, and its body unless it is a stream."""
        self.read_until(b"\r\n\r\n")
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = b""
        if length is not None:
            while len(self.buf) < length:
                self.read_more()
            body, self.buf = self.buf[:length], self.buf[length:]
        return int(head.split(b" ")[1]), body

    def read_more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed; got {self.buf[-300:]!r}")
        self.buf += chunk

    def read_until(self, needle: bytes, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.buf:
            assert time.monotonic() < deadline, f"{needle!r} never arrived: {self.buf[-300:]!r}"
            self.read_more()

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def held(conns: list[Conn]) -> Iterator[list[Conn]]:
    try:
        yield conns
    finally:
        for c in conns:
            c.close()


def test_watch_streams_leave_writes_and_healthz_alone(tmp_path: Path) -> None:
    with serving_cluster(tmp_path, 3, ("--max-connections", str(LIMIT))) as cluster:
        leader = cluster.leader()
        follower = next(n.id for n in cluster.topology.nodes if n.id != leader)
        lead_url, follow_url = cluster.url(leader), cluster.url(follower)
        deadline = time.monotonic() + 10
        while (cluster.status(follower) or {}).get("leader") != leader:
            assert time.monotonic() < deadline, f"{follower} never learned the leader"
            time.sleep(0.05)
        assert http("PUT", follow_url + "/v1/kv/before", b"x").status == 200
        with held([]) as watches:
            # More watch streams on the leader than --max-connections (all are served).
            answers = []
            for _ in range(LIMIT + 8):
                c = Conn(lead_url)
                watches.append(c)
                c.send("GET", "/v1/watch?prefix=w")
                answers.append(c.status())
            # A write through a follower (forwarded to the leader) and the leader's health.
            r = http("PUT", follow_url + "/v1/kv/w1", b"one")
            assert r.status == 200, r.body
            r = http("GET", lead_url + "/healthz")
            assert r.status == 200, r.body
            assert [status for status, _ in answers] == [200] * len(answers), answers[-1]
            for c in watches:
                c.read_until(b'"key":"w1"')
            _clients_full_yet_forwarding_and_health_answer(cluster, lead_url, follow_url)


def _clients_full_yet_forwarding_and_health_answer(
    cluster: Cluster, lead_url: str, follow_url: str
) -> None:
    """Idle keep-alive clients fill the leader's client budget: a new client is refused, but
    forwarded writes (the peers' own budget) and /healthz still answer."""
    with held([]) as clients:
        refused = None
        for _ in range(LIMIT + 2):
            c = Conn(lead_url)
            c.send("GET", "/v1/status")
            status, body = c.status()
            if status == 503:
                refused = json.loads(body)["error"]
                c.close()
                break
            assert status == 200
            clients.append(c)
        assert refused == "too_many_connections" and len(clients) <= LIMIT
        r = http("PUT", follow_url + "/v1/kv/w2", b"two")
        assert r.status == 200, r.body
        r = http("GET", lead_url + "/healthz")
        assert r.status == 200, r.body
        r = http("PUT", lead_url + "/v1/kv/w3", b"three")
        assert r.status == 503 and r.json()["error"] == "too_many_connections", r.body
