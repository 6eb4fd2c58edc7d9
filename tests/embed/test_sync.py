"""SyncNode: the embedded node for code without asyncio (each node on its own thread)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from raftkv.embed import (
    CommandFailed,
    Counter,
    EventKind,
    LeadershipEvent,
    NodeStopped,
    ReplicatedDict,
    SyncNode,
)
from raftkv.errors import CallerError

from .harness import FAST, make_peers


def test_sync_nodes_replicate_and_read(tmp_path: Path) -> None:
    ids = ["n1", "n2", "n3"]
    peers = make_peers(ids)
    counters = [Counter() for _ in ids]
    nodes = [
        SyncNode(c, node_id=nid, peers=peers, data_dir=tmp_path / nid, options=FAST)
        for nid, c in zip(ids, counters, strict=True)
    ]
    events: list[LeadershipEvent] = []
    for node in nodes:
        node.add_listener(events.append)
    for node in nodes:
        node.start()
    try:
        leader = nodes[0].wait_for_leader(10)
        assert all(n.wait_for_leader(10) == leader for n in nodes)
        for node, counter in zip(nodes, counters, strict=True):
            node.call(counter.add, 2)
        # concurrent callers from several threads
        threads = [
            threading.Thread(target=lambda n=n, c=c: [n.call(c.add, 1) for _ in range(5)])
            for n, c in zip(nodes, counters, strict=True)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [n.call(c.get) for n, c in zip(nodes, counters, strict=True)] == [21, 21, 21]
        assert nodes[1].read(lambda c: c.value) == 21
        status = nodes[2].status()
        assert status.leader == leader and status.applied_index >= 7
        assert sum(n.is_leader for n in nodes) == 1
        assert any(e.kind is EventKind.BECAME_LEADER and e.node == leader for e in events)
    finally:
        for node in nodes:
            node.stop()
    with pytest.raises(CallerError, match="not running"):
        nodes[0].apply(1)


def test_sync_errors_reach_the_caller(tmp_path: Path) -> None:
    peers = make_peers(["n1"])
    d = ReplicatedDict()
    with SyncNode(d, node_id="n1", peers=peers, data_dir=tmp_path, options=FAST) as node:
        node.wait_for_leader(10)
        assert node.call(d.set, "k", 1) is None
        with pytest.raises(CommandFailed, match="no replicated method"):
            node.apply(["nope", b""])
        started = time.monotonic()
        assert node.call(d.get, "k") == 1
        assert time.monotonic() - started < 2
    with pytest.raises((CallerError, NodeStopped)):
        node.call(d.get, "k")
