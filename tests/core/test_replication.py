"""Log replication and the commit rule: consistency check, conflicts, fast backtracking,
flow control, commit only by counting current-term entries (paper Figure 8)."""

from __future__ import annotations

import random

from raftkv.core.config import Config
from raftkv.core.messages import AppendEntries, AppendEntriesResponse
from raftkv.core.raft import RaftNode
from raftkv.core.types import Entry, EntryKind, HardState

from .harness import CONFIG, Harness, persist_now


def test_proposal_commits_and_applies_everywhere_in_order() -> None:
    h = Harness()
    a = h.elect("a")
    for i in range(5):
        a.propose(f"v{i}".encode())
    h.drain()
    h.tick("a")  # followers learn the commit index from the next heartbeat
    for n in "abc":
        data = [e.data for e in h.applied[n] if e.kind is EntryKind.NORMAL]
        assert data == [b"v0", b"v1", b"v2", b"v3", b"v4"], n
        assert [e.index for e in h.applied[n]] == list(range(1, 7))


def test_a_new_commit_index_reaches_followers_with_the_next_append_or_heartbeat() -> None:
    """No message carries only a commit index: the leader applies at once, followers learn
    it from whatever goes to them next (a heartbeat at the latest)."""
    h = Harness()
    a = h.elect("a")
    h.tick("a")
    a.propose(b"x")
    h.drain()
    assert a.log.committed == 2 and h.applied["a"][-1].data == b"x"
    assert [h.nodes[n].log.committed for n in "bc"] == [1, 1]
    a.propose(b"y")  # its append carries commit 2
    h.drain()
    assert [h.nodes[n].log.committed for n in "abc"] == [3, 2, 2]
    h.tick("a")  # the heartbeat brings commit 3
    assert [h.nodes[n].log.committed for n in "abc"] == [3, 3, 3]
    assert all([e.data for e in h.applied[n]] == [b"", b"x", b"y"] for n in "abc")


def test_new_leader_appends_a_noop_in_its_term() -> None:
    h = Harness()
    a = h.elect("a")
    assert a.log.entry(1).kind is EntryKind.NOOP and a.log.entry(1).term == 1


def test_leader_sends_appends_before_its_own_fsync_but_counts_itself_after() -> None:
    """Dissertation 10.2.1: the leader replicates in parallel with its own disk write, but its
    own copy counts towards a majority only once it is durable (persisted)."""
    h = Harness()
    a = h.elect("a")
    a.propose(b"x")
    rd = a.ready()
    assert rd.persist is not None and rd.persist.entries and rd.persist.must_sync
    assert any(isinstance(m, AppendEntries) and m.entries for m in rd.messages)
    assert a.progress["a"].match == 1, "not counted before the persist"
    persist_now(h.disks["a"], a, rd)
    assert a.progress["a"].match == 2


def test_isolated_leader_cannot_commit() -> None:
    h = Harness()
    a = h.elect("a")
    h.isolate("a")
    a.propose(b"x")
    h.drain()
    assert a.log.last_index() == 2 and a.log.committed == 1


def test_follower_conflicting_suffix_is_replaced() -> None:
    h = Harness()
    # c has an uncommitted entry from an old term that the leader never had.
    h.disks["c"].persist(HardState(1, None, 0), [Entry(1, 1), Entry(1, 2, data=b"stale")])
    h.disks["a"].persist(HardState(1, None, 0), [Entry(1, 1)])
    h.disks["b"].persist(HardState(1, None, 0), [Entry(1, 1)])
    for n in "abc":
        h.restart(n)
    h.wait_out_start_hold()
    a = h.elect("a")
    a.propose(b"fresh")
    h.drain()
    assert [e.data for e in h.nodes["c"].log.entries] == [b"", b"", b"fresh"]
    assert h.nodes["c"].log.entry(2).term == 2


def test_fast_backtracking_needs_few_round_trips() -> None:
    """A follower with 100 divergent entries is repaired in a handful of probes, not 100."""
    old = [Entry(1, 1)] + [Entry(2, i) for i in range(2, 102)]
    new = [Entry(1, 1)] + [Entry(3, i) for i in range(2, 52)]
    h = Harness()
    h.disks["a"].persist(HardState(3, None, 0), new)
    h.disks["b"].persist(HardState(3, None, 0), new)
    h.disks["c"].persist(HardState(2, None, 0), old)
    for n in "abc":
        h.restart(n)
    h.wait_out_start_hold()
    h.elect("a")
    responses = [m for m in h.sent if isinstance(m, AppendEntriesResponse)]
    rejects = [m for m in responses if m.src == "c" and not m.success]
    assert 1 <= len(rejects) <= 3
    assert h.nodes["c"].log.last_index() == h.nodes["a"].log.last_index()
    assert h.nodes["c"].log.entries == h.nodes["a"].log.entries


def test_replication_respects_the_inflight_window() -> None:
    config = Config(election_ticks=10, max_inflight=2, max_batch_entries=1)
    h = Harness(config=config)
    a = h.elect("a")
    h.cut |= {("b", "a"), ("c", "a")}  # acks are lost: the window fills up
    for i in range(10):
        a.propose(str(i).encode())
    h.drain()
    before = len([m for m in h.sent_of(AppendEntries) if m.dst == "b"])
    a.propose(b"more")
    h.drain()
    after = len([m for m in h.sent_of(AppendEntries) if m.dst == "b"])
    assert after == before, "no append may be sent while the window is full"
    h.heal()
    h.tick_all(3)
    assert h.nodes["b"].log.last_index() == a.log.last_index()


def _inflight(h: Harness, leader: str) -> dict[str, int]:
    return {p: len(pr.inflight) for p, pr in h.nodes[leader].progress.items() if p != leader}


def test_only_the_followers_a_commit_waits_for_get_pipelined_appends() -> None:
    config = Config(election_ticks=10, max_inflight=8, max_batch_entries=1)
    h = Harness(config=config)
    a = h.elect("a")
    h.tick("a")
    h.cut |= {("b", "a"), ("c", "a")}  # hold every ack back: the windows fill up
    for i in range(6):
        a.propose(str(i).encode())
    h.drain()
    # b (first of the two, equally caught up) is the one a commit needs: 6 appends in
    # flight; c gets one at a time, each carrying all that is new once it answers.
    assert _inflight(h, "a") == {"b": 6, "c": 1}
    h.heal()
    h.tick("a")
    assert all(h.nodes[n].log.last_index() == a.log.last_index() for n in "bc")


def test_when_the_quorum_follower_goes_silent_the_other_takes_its_place() -> None:
    h = Harness()
    a = h.elect("a")
    h.tick("a")
    h.isolate("b")  # b was the follower commits waited for
    h.cut -= {("a", "c"), ("c", "a")}
    for i in range(5):
        a.propose(str(i).encode())
        h.drain()
    assert a.log.committed == a.log.last_index(), "c's acks commit everything"
    assert h.nodes["c"].log.last_index() == a.log.last_index()
    assert a.progress["c"].match > a.progress["b"].match


def _leader_with_old_term_entries(node_class: type[RaftNode] = RaftNode) -> Harness:
    """a holds entries from terms 1 and 2 that b and c lack, then leads term 3 (Figure 8)."""
    h = Harness(node_class=node_class)
    h.disks["a"].persist(HardState(2, None, 0), [Entry(1, 1), Entry(2, 2)])
    h.disks["b"].persist(HardState(2, None, 0), [])
    h.disks["c"].persist(HardState(2, None, 0), [])
    for n in "abc":
        h.restart(n)
    h.wait_out_start_hold()
    h.drop_if = lambda m: isinstance(m, AppendEntries)  # votes only; appends go by hand
    a = h.nodes["a"]
    a.campaign()
    h.drain()
    assert a.term == 3 and a.log.last_index() == 3  # the no-op of term 3 is at index 3
    return h


def test_leader_does_not_commit_an_old_term_entry_by_counting() -> None:
    h = _leader_with_old_term_entries()
    a = h.nodes["a"]
    a.step(AppendEntriesResponse(3, "b", "a", True, 2))  # b holds index 2 (term 2)
    h.drain()
    assert a.log.committed == 0, "index 2 is on a majority but is from term 2: not committed"
    a.step(AppendEntriesResponse(3, "b", "a", True, 3))  # b holds the term-3 no-op
    h.drain()
    assert a.log.committed == 3, "committing index 3 commits everything before it"


def test_planted_bug_commit_by_counting_is_visible_to_the_rule_test() -> None:
    class CommitOldTerm(RaftNode):
        def _may_commit(self, index: int) -> bool:
            return True

    h = _leader_with_old_term_entries(CommitOldTerm)
    a = h.nodes["a"]
    a.step(AppendEntriesResponse(3, "b", "a", True, 2))
    h.drain()
    assert a.log.committed == 2  # the mutant commits what Figure 8 shows can be lost


def test_committed_entries_are_handed_out_once_and_in_order() -> None:
    h = Harness()
    a = h.elect("a")
    for i in range(30):
        a.propose(str(i).encode())
        if i % 7 == 0:
            h.drain()
    h.drain()
    h.tick("a")
    for n in "abc":
        indexes = [e.index for rd in h.readies[n] for e in rd.committed]
        assert indexes == list(range(1, 32)), n


def test_follower_acks_only_after_persisting() -> None:
    h = Harness()
    h.elect("a")
    h.nodes["a"].propose(b"x")
    msgs = h.process("a")
    b = h.nodes["b"]
    for m in msgs:
        if m.dst == "b":
            b.step(m)
    rd = b.ready()
    assert rd.persist is not None and rd.persist.entries
    assert not any(isinstance(m, AppendEntriesResponse) for m in rd.messages)
    assert any(isinstance(m, AppendEntriesResponse) for m in rd.persist.after_sync)


def test_restart_recovers_log_and_reapplies_committed_entries() -> None:
    h = Harness()
    a = h.elect("a")
    a.propose(b"x")
    h.drain()
    h.tick("a")
    b = h.restart("b")
    assert b.log.committed == 2 and b.log.applied == 0
    h.process("b")
    assert [e.data for e in h.applied["b"]] == [b"", b"x"]


def test_random_is_injected() -> None:
    one = RaftNode("a", ("a", "b", "c"), CONFIG, random.Random(7))
    two = RaftNode("a", ("a", "b", "c"), CONFIG, random.Random(7))
    assert one._randomized_timeout == two._randomized_timeout
