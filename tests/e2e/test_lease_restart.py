"""Issue #15 item 2 on real processes: a lease read must never return a value older than a
write the cluster acknowledged, even when a follower restarts while the leader is cut off.

Three `raftkv serve` processes with a 50 ms tick: n1 and n2 wait 100 ticks (5 s) before an
election, so n1's lease lasts about 4.9 s; n3 waits 5 ticks and campaigns often. n3 has been cut
off from the leader n1; n1's heartbeats are acknowledged by n2; n1 is isolated and n2 is killed
and restarted at once. A restarted n2 that votes at once (it knows no leader) elects n3 as soon
as n3's link to it is back (within about 3 s: the redial backoff), and n3 commits x=2 while n1
still answers lease reads with x=1. With the fix n2 votes only 5 s after it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .harness import Response, free_base_port, http

pytestmark = pytest.mark.timeout(120)

TICK_MS = 50
ELECTION_TICKS = {"n1": 100, "n2": 100, "n3": 5}
HOLD_S = ELECTION_TICKS["n2"] * TICK_MS / 1000  # how long a restarted n2 holds its vote


@dataclass
class Nodes:
    root: Path
    base: int
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def url(self, nid: str) -> str:
        return f"http://127.0.0.1:{self.base + 1000 + int(nid[1:]) - 1}"

    def start(self, nid: str) -> None:
        peers = ",".join(
            f"{n}=127.0.0.1:{self.base + i}@{self.url(n)}" for i, n in enumerate(ELECTION_TICKS)
        )
        port = self.base + int(nid[1:]) - 1
        with (self.root / f"{nid}.log").open("ab") as log:
            self.procs[nid] = subprocess.Popen(
                [
                    sys.executable, "-m", "raftkv.cli", "serve", "--id", nid,
                    "--data-dir", str(self.root / nid), "--listen", f"127.0.0.1:{port}",
                    "--http", self.url(nid).removeprefix("http://"), "--peers", peers,
                    "--allow-fault-injection", "--tick-ms", str(TICK_MS),
                    "--election-ticks", str(ELECTION_TICKS[nid]), "--request-timeout", "1",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def kill9(self, nid: str) -> None:
        proc = self.procs.pop(nid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def request(self, method: str, nid: str, path: str, body: bytes | None = None) -> Response:
        return http(method, self.url(nid) + path, body, timeout=3.0)

    def role(self, nid: str) -> str | None:
        try:
            r = self.request("GET", nid, "/v1/status")
        except OSError:
            return None
        return str(r.json()["role"]) if r.status == 200 else None

    def wait_until_leader(self, nid: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while self.role(nid) != "leader":
            assert time.monotonic() < deadline, f"{nid} did not become the leader"
            time.sleep(0.05)

    def net(self, nid: str, faults: dict[str, object]) -> None:
        r = self.request("POST", nid, "/v1/debug/net", json.dumps(faults).encode())
        assert r.status == 200, r.body


@contextlib.contextmanager
def three_nodes(root: Path) -> Iterator[Nodes]:
    nodes = Nodes(root, free_base_port(3))
    try:
        for nid in ELECTION_TICKS:
            nodes.start(nid)
        yield nodes
    finally:
        for nid in list(nodes.procs):
            nodes.kill9(nid)


def test_a_restarted_follower_does_not_let_a_new_leader_outrun_the_old_leaders_lease(
    tmp_path: Path,
) -> None:
    with three_nodes(tmp_path) as nodes:
        # n3 (5 election ticks) wins the first election; hand leadership to n1.
        deadline = time.monotonic() + 15
        while not any(nodes.role(n) == "leader" for n in ELECTION_TICKS):
            assert time.monotonic() < deadline, "no first leader"
            time.sleep(0.05)
        r = nodes.request("POST", "n2", "/v1/leader/transfer", b'{"to": "n1"}')
        assert r.status == 200, r.body
        nodes.wait_until_leader("n1")
        assert nodes.request("PUT", "n1", "/v1/kv/x", b"1").status == 200

        nodes.net("n1", {"drop_to": ["n3"]})
        nodes.net("n3", {"drop_to": ["n1"]})
        time.sleep(0.5)  # n3 campaigns in vain: n2 holds its vote for n1
        r = nodes.request("GET", "n1", "/v1/kv/x?consistency=lease")
        assert (r.status, r.body) == (200, b"1")

        nodes.net("n1", {"isolate": True})
        isolated = time.monotonic()
        nodes.kill9("n2")
        nodes.start("n2")

        seen: list[str] = []  # what happened, in seconds since n1 was isolated
        written = 0.0
        stale = 0
        while time.monotonic() < isolated + 2 * HOLD_S + 4:
            time.sleep(0.05)
            now = f"{time.monotonic() - isolated:.2f}s"
            if not written:
                if nodes.role("n3") == "leader":
                    r = nodes.request("PUT", "n3", "/v1/kv/x", b"2")
                    seen.append(f"{now} put x=2 on n3: {r.status}")
                    written = time.monotonic() if r.status == 200 else 0.0
                continue
            r = nodes.request("GET", "n1", "/v1/kv/x?consistency=lease")
            seen.append(f"{now} lease read on n1: {r.status} {r.body[:40]!r}")
            stale += (r.status, r.body) == (200, b"1")
            if time.monotonic() - written > 1.0:
                break
        assert written, f"x=2 was never written: n3 not elected? {seen}"
        assert not stale, f"{stale} lease reads on n1 answered x=1 after x=2 was written: {seen}"
        took = written - isolated
        assert took >= HOLD_S, f"x=2 committed {took:.2f}s after n1 was isolated: {seen}"
