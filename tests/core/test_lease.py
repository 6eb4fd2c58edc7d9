"""Lease reads against elections: no other leader may be elected while a leader's lease is
valid. Voters hold their votes for an election timeout after acknowledging a heartbeat, and
after a restart; the lease counts on the holds the voters state (mixed timeouts, tick lengths);
leadership transfers still work."""

from __future__ import annotations

from raftkv.core.config import Config
from raftkv.core.messages import HeartbeatResponse
from raftkv.core.types import NodeId, ReadState, Role

from .harness import CONFIG, Harness


def _other_leaders(h: Harness, lessee: NodeId) -> list[NodeId]:
    return [n for n in h.leaders() if n != lessee and h.nodes[n].term > h.nodes[lessee].term]


def _run_until_another_leads(h: Harness, lessee: NodeId, max_ticks: int) -> int:
    """Tick every node until a node other than lessee leads a newer term; at every step no
    such leader may exist while lessee's lease is valid. Returns the ticks it took."""
    for ticks in range(1, max_ticks + 1):
        h.tick_all()
        others = _other_leaders(h, lessee)
        assert not (others and h.nodes[lessee]._lease_valid()), (
            f"{others} leads while {lessee}'s lease is valid: lease reads would be stale"
        )
        if others:
            return ticks
    raise AssertionError(f"no new leader within {max_ticks} ticks")


def test_a_restarted_voter_elects_no_one_while_the_leader_it_acknowledged_holds_a_lease() -> None:
    """Issue #15 item 2: c long cut off from a; a's round is acknowledged by b; a is isolated;
    b restarts and knows no leader; c's election timer fires at once."""
    h = Harness()
    a = h.elect("a")
    a.propose(b"x=1")
    h.drain()
    h.cut |= {("a", "c"), ("c", "a")}
    h.tick_all(3 * CONFIG.election_ticks)  # c campaigns now and then; b holds for a
    assert h.leaders() == ["a"]
    h.tick("a")  # a heartbeat round that b acknowledges: a's lease is renewed
    assert a._lease_valid()
    h.isolate("a")
    h.restart("b")
    h.nodes["c"].campaign()  # the worst moment for c's timer to fire
    h.drain()
    assert h.nodes["c"].role is not Role.LEADER, "b helped elect c within a's lease"
    took = _run_until_another_leads(h, "a", 4 * CONFIG.election_ticks)
    assert took >= CONFIG.election_ticks, "b voted within an election timeout of its start"


def test_a_node_that_never_had_a_term_votes_at_once() -> None:
    h = Harness()  # a new cluster: nobody has acknowledged a leader, no lease to protect
    h.elect("a")
    assert h.leaders() == ["a"]


def test_a_restarted_node_votes_again_after_an_election_timeout() -> None:
    h = Harness()
    h.elect("a")
    h.isolate("a")
    b, c = h.restart("b"), h.restart("c")
    for _ in range(CONFIG.election_ticks - 1):
        b.tick()
    c.campaign()
    h.drain()
    assert c.role is Role.PRE_CANDIDATE, "b still holds its vote"
    b.tick()
    c.campaign()
    h.drain()
    assert h.leaders() == ["a", "c"] and c.term == 2  # a, isolated, still believes it leads


def test_leadership_transfer_to_a_node_that_just_restarted() -> None:
    h = Harness()
    a = h.elect("a")
    a.propose(b"x")
    h.drain()
    h.restart("b")
    a.transfer_leadership("b")  # TimeoutNow: b campaigns at once, in its hold or not
    h.drain()
    assert h.leaders() == ["b"]


def test_a_node_that_just_restarted_grants_a_transfer_vote() -> None:
    h = Harness()
    a = h.elect("a")
    h.restart("b")
    h.cut |= {("c", "a")}  # only b's vote can elect c
    a.transfer_leadership("c")
    h.drain()
    assert h.nodes["c"].role is Role.LEADER
    assert not a._lease_valid(), "the old leader stopped serving lease reads when it handed over"


def test_followers_state_their_vote_hold_in_real_time() -> None:
    config = Config(election_ticks=7, heartbeat_ticks=1, tick_us=20_000)
    h = Harness(config=config)
    h.elect("a")
    h.tick("a")
    acks = [m for m in h.sent if isinstance(m, HeartbeatResponse) and m.read_seq > 0]
    assert acks and {m.hold_us for m in acks} == {6 * 20_000}  # 7 ticks, the first maybe at once


def test_the_lease_counts_on_the_shortest_hold_of_the_voters_that_confirmed_it() -> None:
    """a and b hold for 60 ticks, c for 5. b has long been cut off from a, so a's rounds are
    confirmed by c alone: c votes again 5 ticks after a's last heartbeat, and a's lease must end
    before that, not after a's own 60."""
    long, short = Config(election_ticks=60), Config(election_ticks=5)
    h = Harness(configs={"a": long, "b": long, "c": short})
    a = h.elect("a")
    h.cut |= {("a", "b"), ("b", "a")}
    h.tick_all(2 * 60)  # b's hold for a ends; b campaigns now and then, c holds for a
    assert h.leaders() == ["a"]
    h.tick("a")
    assert a._lease_valid()
    h.isolate("a")
    _run_until_another_leads(h, "a", 4 * 60)


def test_holds_are_compared_in_real_time_when_tick_lengths_differ() -> None:
    """a ticks every 50 ms, b and c every 25 ms with the same 10 election ticks: their hold
    (9 ticks of 25 ms = 225 ms) is 4 of a's ticks, so a's lease is 4 - 1 (drift) = 3 ticks."""
    fast = Config(election_ticks=10, tick_us=25_000)
    assert CONFIG.tick_us == 50_000 and CONFIG.lease_drift_ticks == 1
    h = Harness(configs={"b": fast, "c": fast})
    a = h.elect("a")
    h.tick("a")  # a round both acknowledge
    h.isolate("a")
    for tick in (1, 2, 3):
        a.tick()
        a.read_index(tick, lease=True)
        h.drain()
    assert h.reads["a"] == [ReadState(1, a.log.committed), ReadState(2, a.log.committed)]
