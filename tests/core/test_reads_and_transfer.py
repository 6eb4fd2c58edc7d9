"""ReadIndex (batched per heartbeat round), lease reads, and leadership transfer."""

from __future__ import annotations

import pytest

from raftkv.core.messages import AppendEntries, Heartbeat, TimeoutNow
from raftkv.core.types import ReadState, Role
from raftkv.errors import NotLeader, ProposalDropped

from .harness import CONFIG, Harness


def _leader() -> Harness:
    h = Harness()
    h.elect("a")
    return h


def test_read_index_needs_a_quorum_round() -> None:
    h = _leader()
    a = h.nodes["a"]
    a.read_index(1)
    rd = a.ready()
    assert rd.read_states == ()
    # The leader's own ack plus one follower's make a quorum of 3: one heartbeat suffices.
    assert len([m for m in rd.messages if isinstance(m, Heartbeat)]) == 1
    for msg in rd.messages:
        h.nodes[msg.dst].step(msg)
    h.drain()
    assert h.reads["a"] == [ReadState(1, a.log.committed)]


def test_reads_in_one_cycle_share_one_heartbeat_round() -> None:
    h = _leader()
    a = h.nodes["a"]
    before = len(h.sent_of(Heartbeat))
    for ctx in range(10):
        a.read_index(ctx)
    h.drain()
    assert len(h.sent_of(Heartbeat)) - before == 1  # one round, to one follower
    assert sorted(r.ctx for r in h.reads["a"]) == list(range(10))


def test_reads_arriving_while_a_round_is_in_flight_wait_for_it_then_share_the_next() -> None:
    h = _leader()
    a = h.nodes["a"]
    a.read_index(1)
    first = a.ready()
    beats = [m for m in first.messages if isinstance(m, Heartbeat)]
    assert len(beats) == 1
    peer = beats[0].dst
    for ctx in (2, 3, 4):  # registered after round 1 left: round 1 cannot confirm them
        a.read_index(ctx)
    assert not a.has_ready()  # no second round while the first is in flight
    h.nodes[peer].step(beats[0])  # the follower's ack completes the quorum for round 1
    for reply in h.process(peer):
        a.step(reply)
    rd = a.ready()
    assert [r.ctx for r in rd.read_states] == [1]
    second = [m for m in rd.messages if isinstance(m, Heartbeat)]
    assert [m.dst for m in second] == [peer]  # the waiting reads' round goes out now
    assert second[0].read_seq == beats[0].read_seq + 1
    for msg in rd.messages:
        h.nodes[msg.dst].step(msg)
    h.drain()
    assert sorted(r.ctx for r in h.reads["a"]) == [2, 3, 4]


def test_reads_behind_a_lost_round_are_served_by_the_next_heartbeat_tick() -> None:
    h = _leader()
    a = h.nodes["a"]
    a.read_index(1)
    a.ready()  # round 1's heartbeats are lost
    a.read_index(2)
    assert not a.has_ready()
    h.tick("a", CONFIG.heartbeat_ticks)  # the periodic round carries both reads
    h.drain()
    assert sorted(r.ctx for r in h.reads["a"]) == [1, 2]


def test_a_read_round_goes_to_the_fewest_followers_that_make_a_quorum() -> None:
    h = Harness(ids=("a", "b", "c", "d", "e"))
    a = h.elect("a")
    a.read_index(1)
    rd = a.ready()
    assert len([m for m in rd.messages if isinstance(m, Heartbeat)]) == 2  # 3 of 5 with a
    for msg in rd.messages:
        h.nodes[msg.dst].step(msg)
    h.drain()
    assert h.reads["a"] == [ReadState(1, a.log.committed)]
    h.tick("a")  # the periodic round still reaches everyone
    assert {m.dst for m in h.sent_of(Heartbeat)[-4:]} == {"b", "c", "d", "e"}


def test_reads_whose_chosen_follower_went_silent_are_confirmed_by_the_next_tick() -> None:
    h = _leader()
    a = h.nodes["a"]
    a.read_index(1)
    rd = a.ready()
    silent = next(m.dst for m in rd.messages if isinstance(m, Heartbeat))
    other = ({"b", "c"} - {silent}).pop()
    h.isolate(silent)
    # the heartbeat to the chosen follower is lost
    h.drain()
    assert h.reads["a"] == []
    h.tick("a")  # everyone gets the periodic round; the other follower's ack confirms it
    assert h.reads["a"] == [ReadState(1, a.log.committed)]
    sent = len(h.sent_of(Heartbeat))
    a.read_index(2)  # from now on read rounds go to the follower that answers
    h.drain()
    assert [m.dst for m in h.sent_of(Heartbeat)[sent:]] == [other]
    assert [r.ctx for r in h.reads["a"]] == [1, 2]


def test_the_follower_serving_a_read_gets_the_commit_index_with_the_read_state() -> None:
    h = _leader()
    a = h.nodes["a"]
    h.tick("a")
    a.propose(b"x")
    h.drain()
    assert (a.log.committed, h.nodes["c"].log.committed) == (2, 1)  # c learns it later...
    a.read_index(7)
    h.drain()
    assert h.nodes["c"].log.committed == 1  # (the read round went to b only)
    a.read_index(8, for_peer="c")
    h.drain()
    assert h.reads["a"][-1] == ReadState(8, 2)
    assert h.nodes["c"].log.committed == 2  # ...unless it serves a read at index 2
    a.read_index(9, lease=True, for_peer="b")  # a lease read is confirmed at once, same rule
    rd = a.ready()
    assert [(m.dst, m.commit) for m in rd.messages if isinstance(m, Heartbeat)] == [("b", 2)]


def test_an_aborted_read_sends_its_follower_nothing() -> None:
    h = _leader()
    a = h.nodes["a"]
    h.isolate("a")
    a.read_index(7, for_peer="c")
    for _ in range(2 * CONFIG.election_ticks):
        a.tick()
        h.drain()
    assert h.reads["a"] == [ReadState(7, None)]
    assert a._read_for == {}


def test_isolated_leader_never_confirms_a_read() -> None:
    h = _leader()
    h.isolate("a")
    h.nodes["a"].read_index(7)
    h.drain()
    assert h.reads["a"] == []


def test_a_read_with_only_a_minority_is_aborted_when_leadership_is_lost() -> None:
    h = _leader()
    h.isolate("a")
    h.nodes["a"].read_index(7)
    for _ in range(2 * CONFIG.election_ticks):
        h.nodes["a"].tick()
        h.drain()
    assert h.nodes["a"].role is Role.FOLLOWER
    assert h.reads["a"] == [ReadState(7, None)]


def test_read_before_the_noop_commits_waits_and_reports_the_noop_index() -> None:
    h = Harness()
    h.drop_if = lambda m: isinstance(m, AppendEntries)  # elect a, but replicate nothing
    a = h.nodes["a"]
    a.campaign()
    h.drain()
    assert a.role is Role.LEADER and a.log.committed == 0
    a.read_index(5)
    h.drain()
    assert h.reads["a"] == [], "our commit index may be stale until our own no-op commits"
    h.drop_if = lambda m: False
    h.tick("a")
    assert h.reads["a"] == [ReadState(5, 1)]  # the index of the committed no-op, not 0


def test_follower_cannot_serve_read_index() -> None:
    h = _leader()
    with pytest.raises(NotLeader):
        h.nodes["b"].read_index(1)


def test_lease_read_is_immediate_after_a_quorum_round() -> None:
    h = _leader()
    a = h.nodes["a"]
    h.tick("a")  # one heartbeat round acknowledged by both followers
    a.read_index(3, lease=True)
    rd = a.ready()
    assert rd.read_states == (ReadState(3, a.log.committed),)
    assert not any(isinstance(m, Heartbeat) for m in rd.messages)


def test_lease_expires_without_acknowledgements() -> None:
    h = _leader()
    a = h.nodes["a"]
    h.tick("a")
    h.isolate("a")
    for _ in range(CONFIG.election_ticks - CONFIG.lease_drift_ticks):
        a.tick()
        h.drain()
    a.read_index(4, lease=True)
    h.drain()
    assert h.reads["a"] == [], "an expired lease falls back to a quorum round, which fails"


def test_transfer_to_a_caught_up_follower() -> None:
    h = _leader()
    a = h.nodes["a"]
    a.propose(b"x")
    h.drain()
    a.transfer_leadership("b")
    h.drain()
    assert h.sent_of(TimeoutNow)
    assert h.leaders() == ["b"] and h.nodes["b"].term == 2
    # The committed entry survived the hand-over.
    assert [e.data for e in h.nodes["b"].log.entries][:2] == [b"", b"x"]


def test_transfer_catches_up_a_lagging_follower_first() -> None:
    h = _leader()
    a = h.nodes["a"]
    h.isolate("c")
    for i in range(5):
        a.propose(str(i).encode())
    h.drain()
    assert h.nodes["c"].log.last_index() < a.log.last_index()
    h.heal()
    a.transfer_leadership("c")
    h.drain()
    assert h.leaders() == ["c"]
    assert h.nodes["c"].log.last_index() >= 6


def test_proposals_are_refused_during_a_transfer_and_lease_reads_stop() -> None:
    h = _leader()
    a = h.nodes["a"]
    h.cut |= {("a", "b")}
    a.transfer_leadership("b")
    h.drain()
    with pytest.raises(ProposalDropped):
        a.propose(b"x")
    assert not a._lease_valid()


def test_transfer_times_out_and_service_resumes() -> None:
    h = _leader()
    a = h.nodes["a"]
    h.cut |= {("a", "b")}
    a.transfer_leadership("b")
    h.drain()
    h.cut.clear()
    h.cut |= {("a", "b")}
    for _ in range(CONFIG.election_ticks):
        a.tick()
        h.drain()
    assert a.role is Role.LEADER
    a.propose(b"after")
