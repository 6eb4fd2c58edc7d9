"""Peer links survive a peer port that accepts and resets connections (issue #15, item 3).

A dying or restarting process can accept a connection and reset it at once. Under uvloop the
dialer's handshake write then raises RuntimeError ("the handler is closed"); before the fix
that ended the link task for good, so the restarted node never heard from its peers again.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from runtime.resetting import ResettingListener

from .harness import Cluster, http, running_cluster

pytestmark = pytest.mark.timeout(120)

RESET_FOR_S = 6.0  # how long the stopped node's raft port accepts and resets
CLIENTS = 16  # concurrent writers keeping the event loops busy meanwhile
RECOVER_S = 15.0


class Load(threading.Thread):
    """One client putting keys to a node until stopped."""

    def __init__(self, url: str, name: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url, self.name, self.stop_event = url, name, stop
        self.ok = 0

    def run(self) -> None:
        i = 0
        while not self.stop_event.is_set():
            try:
                r = http("PUT", f"{self.url}/v1/kv/{self.name}-{i}", b"v", timeout=5)
            except OSError:
                continue
            self.ok += r.status == 200
            i += 1


def _member(status: dict[str, Any], peer: str) -> dict[str, Any]:
    return next(m for m in status["members"] if m["id"] == peer)


def _metric(cluster: Cluster, node: str, name: str, peer: str) -> float:
    text = http("GET", cluster.url(node) + "/metrics").body.decode()
    m = re.search(rf'^{name}{{peer="{peer}"}} (\S+)$', text, re.MULTILINE)
    assert m is not None, f"{name}{{peer={peer}}} not in {node}'s metrics"
    return float(m.group(1))


def _caught_up(cluster: Cluster, node: str, leader: str) -> bool:
    st, lead = cluster.status(node), cluster.status(leader)
    return (
        st is not None
        and lead is not None
        and st["leader"] == leader
        and st["applied_index"] >= lead["commit_index"] - 50
    )


def test_links_redial_after_accept_and_reset(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as cluster:
        leader = cluster.leader()
        nodes = [n.id for n in cluster.topology.nodes]
        victim = next(n for n in nodes if n != leader)
        other = next(n for n in nodes if n not in (leader, victim))
        spec = next(n for n in cluster.topology.nodes if n.id == victim)
        cluster.kill9(victim)

        listener = ResettingListener(spec.host, spec.raft_port)
        listener.start()
        stop = threading.Event()
        load = [Load(cluster.url(leader), f"c{i}", stop) for i in range(CLIENTS)]
        for t in load:
            t.start()
        time.sleep(RESET_FOR_S)
        during = {n: cluster.status(n) for n in (leader, other)}
        stop.set()
        for t in load:
            t.join(10)
        listener.stop()
        assert listener.resets > 0 and sum(t.ok for t in load) > 0

        # The node comes back: its peers' links redial and it rejoins the cluster.
        cluster.up()
        deadline = time.monotonic() + RECOVER_S
        while not _caught_up(cluster, victim, leader):
            assert time.monotonic() < deadline, f"{victim} never rejoined: {cluster.status(victim)}"
            time.sleep(0.1)
        # With the leader gone, the two others still elect a leader and take writes
        # (each needs its link to the other).
        cluster.kill9(leader)
        new = cluster.leader(among=[victim, other], timeout=RECOVER_S)
        r = http("PUT", cluster.url(new) + "/v1/kv/after", b"x", timeout=10)
        assert r.status == 200, r.body

        # While the port reset, the peers said the link was down, and why.
        for node in (leader, other):
            st = during[node]
            assert st is not None
            link = _member(st, victim)["link"]
            assert link["state"] == "down" and link["down_since"] is not None, link
            assert link["last_error"], link
        # Now the survivor says the link is up, counts the failures, and logged the streak
        # once (not once per attempt).
        st = cluster.status(other)
        assert st is not None
        link = _member(st, victim)["link"]
        assert link["state"] == "connected" and link["down_since"] is None, link
        assert _metric(cluster, other, "raftkv_peer_link_up", victim) == 1.0
        assert _metric(cluster, other, "raftkv_peer_link_failures_total", victim) >= 2
        log = (cluster.data_dir / other / "node.log").read_text()
        down_lines = [ln for ln in log.splitlines() if f"no link to peer {victim}" in ln]
        assert 1 <= len(down_lines) <= 3, down_lines
