"""Log compaction and snapshot install (InstallSnapshot) in the core."""

from __future__ import annotations

import pytest

from raftkv.core.log import LogInvariantError
from raftkv.core.messages import InstallSnapshot
from raftkv.core.types import Entry, HardState, Snapshot

from .harness import Harness


def _compact(h: Harness, node: str) -> Snapshot:
    raft = h.nodes[node]
    index = raft.log.applied
    snap = Snapshot(index, raft.log.term(index) or 0, f"state@{index}".encode(), raft.voters)
    h.disks[node].install(snap)
    raft.compact(snap)
    return snap


def test_compaction_drops_the_applied_prefix() -> None:
    h = Harness()
    a = h.elect("a")
    for i in range(5):
        a.propose(str(i).encode())
    h.drain()
    snap = _compact(h, "a")
    assert a.log.snapshot_index == snap.index == 6 and a.log.entries == []
    assert a.log.term(6) == 1 and a.log.term(5) is None


def test_cannot_compact_beyond_applied() -> None:
    h = Harness()
    a = h.elect("a")
    with pytest.raises(LogInvariantError):
        a.compact(Snapshot(a.log.applied + 1, 1, b""))


def test_lagging_follower_receives_the_snapshot_and_catches_up() -> None:
    h = Harness()
    a = h.elect("a")
    h.isolate("c")
    for i in range(5):
        a.propose(str(i).encode())
    h.drain()
    snap = _compact(h, "a")
    a.propose(b"after")
    h.heal()
    h.tick_all(3)
    c = h.nodes["c"]
    installs = [m for m in h.sent if isinstance(m, InstallSnapshot) and m.dst == "c"]
    assert len(installs) == 1 and installs[0].data == snap.data
    written = [rd.persist.snapshot for rd in h.readies["c"] if rd.persist and rd.persist.snapshot]
    assert written == [Snapshot(6, 1, snap.data, snap.voters)]
    restored = [rd.restore for rd in h.readies["c"] if rd.restore is not None]
    assert restored == written, "the state machine restarts from it once it is durable"
    assert c.log.snapshot_index == 6 and c.log.last_index() == a.log.last_index()
    assert c.log.committed == a.log.committed and c.log.entry(7).data == b"after"
    assert h.disks["c"].snapshot is not None and h.disks["c"].has(7, 1)


def test_snapshot_already_covered_by_commit_changes_nothing() -> None:
    h = Harness()
    a = h.elect("a")
    a.propose(b"x")
    h.drain()
    b = h.nodes["b"]
    before = list(b.log.entries)
    b.step(InstallSnapshot(1, "a", "b", 1, 1, ("a", "b", "c"), b"old"))
    rd = b.ready()
    assert rd.persist is not None and rd.persist.snapshot is None and b.log.entries == before


def test_snapshot_matching_our_log_keeps_the_suffix() -> None:
    h = Harness()
    h.disks["b"].persist(HardState(1, None, 0), [Entry(1, 1), Entry(1, 2), Entry(1, 3)])
    b = h.restart("b")
    b.step(InstallSnapshot(1, "a", "b", 2, 1, ("a", "b", "c"), b"s"))
    rd = b.ready()
    assert rd.persist is not None and rd.persist.snapshot is None, "our log holds (2, 1)"
    assert b.log.committed == 2 and b.log.last_index() == 3


def test_restart_from_a_snapshot() -> None:
    h = Harness()
    a = h.elect("a")
    for i in range(3):
        a.propose(str(i).encode())
    h.drain()
    _compact(h, "a")
    a2 = h.restart("a")
    assert a2.log.snapshot_index == 4 and a2.log.applied == 4 and a2.snapshot is not None
