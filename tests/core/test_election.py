"""Leader election rules: votes, terms, the election restriction, pre-vote, check-quorum."""

from __future__ import annotations

import random

import pytest

from raftkv.core.config import Config
from raftkv.core.messages import (
    AppendEntries,
    AppendEntriesResponse,
    HeartbeatResponse,
    RequestVote,
    RequestVoteResponse,
)
from raftkv.core.raft import RaftNode
from raftkv.core.types import Entry, HardState, Role
from raftkv.errors import BadRequest, NotLeader

from .harness import CONFIG, Harness


def _node(node_id: str = "a", config: Config = CONFIG, **kw: object) -> RaftNode:
    return RaftNode(node_id, ("a", "b", "c"), config, random.Random(0), **kw)  # type: ignore[arg-type]


def test_single_node_elects_itself_and_commits() -> None:
    h = Harness(ids=("solo",))
    leader = h.elect("solo")
    assert leader.term == 1
    leader.propose(b"x")
    h.drain()
    assert [e.data for e in h.applied["solo"]] == [b"", b"x"]


def test_candidate_wins_with_majority_and_others_follow() -> None:
    h = Harness()
    a = h.elect("a")
    assert a.term == 1 and h.leaders() == ["a"]
    assert all(h.nodes[n].leader == "a" for n in "bc")


def test_timeout_starts_an_election() -> None:
    h = Harness()
    h.tick("a", 2 * CONFIG.election_ticks)
    assert h.leaders() == ["a"]


def test_vote_is_durable_before_the_request_leaves() -> None:
    node = _node(config=Config(pre_vote=False))
    node.campaign()
    rd = node.ready()
    assert rd.persist is not None and rd.persist.must_sync
    assert rd.persist.hard_state == HardState(term=1, vote="a", commit=0)
    assert rd.messages == ()
    assert {type(m) for m in rd.persist.after_sync} == {RequestVote}


def test_one_vote_per_term() -> None:
    node = _node("c")
    node.step(RequestVote(2, "a", "c", 0, 0))
    node.step(RequestVote(2, "b", "c", 0, 0))
    rd = node.ready()
    assert rd.persist is not None
    grants = {m.dst: m.granted for m in rd.persist.after_sync if isinstance(m, RequestVoteResponse)}
    assert grants == {"a": True, "b": False}
    assert rd.persist.hard_state is not None and rd.persist.hard_state.vote == "a"


def test_repeated_request_from_the_same_candidate_is_granted_again() -> None:
    node = _node("c")
    node.step(RequestVote(2, "a", "c", 0, 0))
    node.step(RequestVote(2, "a", "c", 0, 0))
    assert _vote_replies(node) == [True, True]


@pytest.mark.parametrize(
    ("cand_last_index", "cand_last_term", "granted"),
    [
        (2, 2, True),  # same log
        (3, 2, True),  # longer, same last term
        (1, 2, False),  # shorter, same last term
        (1, 3, True),  # shorter but newer last term
        (5, 1, False),  # longer but older last term
    ],
)
def test_election_restriction(cand_last_index: int, cand_last_term: int, granted: bool) -> None:
    node = _node("c", hard_state=HardState(2, None, 0), entries=[Entry(1, 1), Entry(2, 2)])
    for _ in range(CONFIG.election_ticks):  # a restarted node votes only after this
        node.tick()
    node.step(RequestVote(5, "a", "c", cand_last_index, cand_last_term))
    assert _vote_replies(node) == [granted]
    assert node.term == 5  # a higher term is adopted even when the vote is refused


def test_stale_term_request_is_rejected() -> None:
    node = _node("c", hard_state=HardState(5, None, 0))
    node.step(RequestVote(4, "a", "c", 9, 4))
    assert node.vote is None and node.term == 5


def test_restart_keeps_term_and_vote_so_no_second_vote() -> None:
    h = Harness()
    h.nodes["c"].step(RequestVote(3, "a", "c", 0, 0))
    h.process("c")
    c = h.restart("c")
    assert (c.term, c.vote) == (3, "a")
    c.step(RequestVote(3, "b", "c", 0, 0))
    assert _vote_replies(c) == [False]


def test_pre_vote_keeps_a_rejoining_node_from_deposing_the_leader() -> None:
    h = Harness()
    h.elect("a")
    h.isolate("c")
    h.tick("c", 10 * CONFIG.election_ticks)
    assert h.nodes["c"].term == 1, "pre-vote must not bump the term of a partitioned node"
    h.heal()
    h.tick_all(3)
    assert h.leaders() == ["a"] and h.nodes["a"].term == 1


def test_without_pre_vote_a_rejoining_node_disrupts() -> None:
    """The counterfactual that shows the pre-vote test above can fail."""
    h = Harness(config=Config(election_ticks=10, pre_vote=False, check_quorum=False))
    h.elect("a")
    h.isolate("c")
    h.tick("c", 3 * CONFIG.election_ticks)
    assert h.nodes["c"].term > 1
    h.heal()
    h.tick_all(1)
    assert h.nodes["a"].term > 1  # the healthy leader was deposed


def test_check_quorum_makes_an_isolated_leader_step_down() -> None:
    h = Harness()
    h.elect("a")
    h.isolate("a")
    for _ in range(2 * CONFIG.election_ticks):
        h.nodes["a"].tick()
        h.drain()
    assert h.nodes["a"].role is Role.FOLLOWER and h.nodes["a"].leader is None


def test_leader_stickiness_ignores_disruptive_candidates() -> None:
    h = Harness()
    h.elect("a")
    b = h.nodes["b"]
    b.step(RequestVote(9, "c", "b", 100, 9))
    assert b.term == 1 and b.leader == "a"


def test_node_must_be_a_voter() -> None:
    with pytest.raises(BadRequest):
        RaftNode("z", ("a", "b"), CONFIG, random.Random(0))


def test_follower_refuses_proposals_with_leader_hint() -> None:
    h = Harness()
    h.elect("a")
    with pytest.raises(NotLeader) as err:
        h.nodes["b"].propose(b"x")
    assert err.value.leader == "a"


def test_messages_wait_for_the_sync_of_a_new_term() -> None:
    """A node that adopts a higher term says nothing in it before the term is durable."""
    node = _node("c")
    node.step(AppendEntries(4, "a", "c", 0, 0, (), 0))
    rd = node.ready()
    assert rd.messages == () and rd.persist is not None and rd.persist.must_sync
    assert [type(m) for m in rd.persist.after_sync] == [AppendEntriesResponse]


def test_responses_from_outside_the_configuration_are_ignored() -> None:
    h = Harness()
    a = h.elect("a")
    a.step(AppendEntriesResponse(1, "stranger", "a", True, 100))
    a.step(HeartbeatResponse(1, "stranger", "a", 5))
    assert a.role is Role.LEADER and "stranger" not in a.progress
    assert not a.has_ready()


def _vote_replies(node: RaftNode) -> list[bool]:
    """The grants in node's next Ready: votes leave only once the vote is durable."""
    rd = node.ready()
    assert not any(isinstance(m, RequestVoteResponse) for m in rd.messages)
    assert rd.persist is not None
    return [m.granted for m in rd.persist.after_sync if isinstance(m, RequestVoteResponse)]


def test_a_candidate_rejected_by_a_majority_steps_back_an_election_timeout() -> None:
    """A stale candidate (no pre-vote) that a majority refuses waits one more election timeout
    before trying again, so a fit node campaigns first instead of its term being bumped."""
    h = Harness(config=Config(election_ticks=10, heartbeat_ticks=1, pre_vote=False))
    # a and b hold entry 2, c does not. (No term on a's and b's disks: a node that never had
    # a term promised nothing, so no restart hold keeps it from answering at once.)
    for node, term, last in (("a", 0, 2), ("b", 0, 2), ("c", 1, 1)):
        h.disks[node].persist(HardState(term, None, 0), [Entry(1, i) for i in range(1, last + 1)])
        h.restart(node)
    c = h.nodes["c"]
    c.campaign()
    h.drain()
    assert c.role is Role.FOLLOWER and c.term == 2, "a majority refused it"
    h.down |= {"a", "b"}  # from here on c hears from nobody
    for _ in range(2 * 10 - 1):  # an election timeout is drawn from [10, 20) ticks
        c.tick()
        h.drain()
    assert c.term == 2 and c.role is Role.FOLLOWER, "it stepped back"
    for _ in range(10):
        c.tick()
        h.drain()
    assert c.term == 3, "and then it tries again"
