"""Single-server membership changes: learners, promotion, removal (including the leader)."""

from __future__ import annotations

import pytest

from raftkv.core.membership import ConfChange, ConfChangeKind, Membership
from raftkv.core.messages import AppendEntries
from raftkv.core.types import Entry, EntryKind, Role, Snapshot
from raftkv.errors import BadRequest, ProposalDropped

from .harness import CONFIG, Harness

ADD, PROMOTE, REMOVE = ConfChangeKind.ADD_LEARNER, ConfChangeKind.PROMOTE, ConfChangeKind.REMOVE


def _cluster_with_learner() -> Harness:
    h = Harness()
    a = h.elect("a")
    h.add_node("d")
    a.propose_conf_change(ConfChange(ADD, "d"))
    h.drain()
    h.tick("a")  # the followers learn the commit index from the heartbeat
    return h


def test_membership_rules() -> None:
    m = Membership.of(("a", "b", "c"))
    assert m.apply(ConfChange(ADD, "d")).learners == ("d",)
    assert m.apply(ConfChange(ADD, "d")).apply(ConfChange(PROMOTE, "d")).voters == (
        "a",
        "b",
        "c",
        "d",
    )
    with pytest.raises(BadRequest):
        m.apply(ConfChange(PROMOTE, "a"))
    with pytest.raises(BadRequest):
        m.apply(ConfChange(ADD, "a"))
    with pytest.raises(BadRequest):
        Membership.of(("a",)).apply(ConfChange(REMOVE, "a"))


def test_learner_is_replicated_to_but_never_counted() -> None:
    h = _cluster_with_learner()
    a, d = h.nodes["a"], h.nodes["d"]
    assert a.learners == ("d",) and d.learners == ("d",)
    assert d.log.last_index() == a.log.last_index() and d.log.committed == a.log.committed
    h.isolate("b")
    h.isolate("c")
    h.cut -= {("a", "d"), ("d", "a")}
    a.propose(b"x")
    h.drain()
    assert d.log.last_index() == a.log.last_index(), "the learner has the entry"
    assert a.log.committed < a.log.last_index(), "but a leader plus a learner is no majority"


def test_learner_never_campaigns() -> None:
    h = _cluster_with_learner()
    h.isolate("d")
    h.tick("d", 10 * CONFIG.election_ticks)
    assert h.nodes["d"].role is Role.FOLLOWER and h.nodes["d"].term == 1


def test_promoted_learner_counts_towards_the_majority() -> None:
    h = _cluster_with_learner()
    a = h.nodes["a"]
    a.propose_conf_change(ConfChange(PROMOTE, "d"))
    h.drain()
    assert all(h.nodes[n].voters == ("a", "b", "c", "d") for n in "abcd")
    h.isolate("c")
    a.propose(b"x")
    h.drain()
    assert a.log.committed == a.log.last_index(), "a, b, d are 3 of 4"
    h.isolate("b")
    a.propose(b"y")
    h.drain()
    assert a.log.committed < a.log.last_index(), "a and d are 2 of 4: no majority"


def test_one_change_at_a_time() -> None:
    h = Harness()
    a = h.elect("a")
    h.isolate("b")
    h.isolate("c")
    a.propose_conf_change(ConfChange(REMOVE, "c"))
    with pytest.raises(ProposalDropped):
        a.propose_conf_change(ConfChange(REMOVE, "b"))


def test_a_new_leader_commits_its_own_entry_before_changing_membership() -> None:
    h = Harness()
    h.drop_if = lambda m: isinstance(m, AppendEntries)
    a = h.nodes["a"]
    a.campaign()
    h.drain()
    assert a.role is Role.LEADER and a.log.committed == 0
    with pytest.raises(ProposalDropped):
        a.propose_conf_change(ConfChange(REMOVE, "c"))


def test_removed_follower_stops_counting_and_cannot_disrupt() -> None:
    h = Harness()
    a = h.elect("a")
    a.propose_conf_change(ConfChange(REMOVE, "c"))
    h.drain()
    assert a.voters == ("a", "b")
    # c was cut from replication with its removal, so it may time out and ask for votes: the
    # members ignore a non-member, and pre-vote keeps its term from rising.
    h.tick("c", 10 * CONFIG.election_ticks)
    assert h.leaders() == ["a"] and a.term == 1 and h.nodes["c"].term == 1
    a.propose(b"x")
    h.drain()
    assert a.log.committed == a.log.last_index()


def test_removing_the_leader_hands_over_after_commit() -> None:
    h = Harness()
    a = h.elect("a")
    a.propose_conf_change(ConfChange(REMOVE, "a"))
    h.drain()
    assert a.role is Role.FOLLOWER, "the removed leader steps down once its removal commits"
    assert h.nodes["b"].voters == ("b", "c")
    for _ in range(3 * CONFIG.election_ticks):
        h.tick_all()
    assert h.leaders() in (["b"], ["c"])
    new = h.nodes[h.leaders()[0]]
    new.propose(b"after")
    h.drain()
    assert new.log.committed == new.log.last_index()
    assert h.nodes["a"].role is Role.FOLLOWER


def test_an_uncommitted_change_truncated_away_is_undone() -> None:
    h = Harness()
    a = h.elect("a")  # index 1: a's no-op, committed everywhere
    h.cut |= {("a", "c"), ("b", "a")}  # b receives but a never hears back: nothing commits
    a.propose_conf_change(ConfChange(REMOVE, "c"))
    h.drain()
    b = h.nodes["b"]
    assert b.membership.voters == ("a", "b"), "a follower uses the latest config in its log"
    # A leader of term 2 (c, which never saw the change) overwrites index 2 on b.
    b.step(AppendEntries(2, "c", "b", 1, 1, (Entry(2, 2, EntryKind.NOOP),), 1))
    b.ready()
    assert b.log.entry(2).term == 2
    assert b.voters == ("a", "b", "c"), "the truncated CONFIG entry no longer applies"


def test_snapshot_carries_the_membership() -> None:
    h = _cluster_with_learner()
    a = h.nodes["a"]
    m = a.membership_at(a.log.applied)
    assert m.learners == ("d",)
    snap = Snapshot(a.log.applied, a.log.term(a.log.applied) or 0, b"s", m.voters, m.learners)
    h.disks["a"].install(snap)
    a.compact(snap)
    a2 = h.restart("a")
    assert a2.learners == ("d",) and a2.voters == ("a", "b", "c")


def test_config_entries_are_in_the_log() -> None:
    h = _cluster_with_learner()
    kinds = [e.kind for e in h.nodes["b"].log.entries]
    assert kinds.count(EntryKind.CONFIG) == 1
