"""Protocol-aware recovery (Alagappan et al., FAST 2018): a node whose storage lost synced
entries (HardState.lost_from) helps elect no one until the leader says it has them again,
and the leader forgets (only then may match go down) what it acknowledged before the loss."""

from __future__ import annotations

import pytest

from raftkv.core.messages import (
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from raftkv.core.raft import RaftNode
from raftkv.core.types import HardState, NodeId, Role, TraceKind
from raftkv.errors import ProposalDropped

from .harness import CONFIG, Harness


def lose(h: Harness, node: NodeId, keep: int, commit: int | None = None) -> RaftNode:
    """Restart node as storage recovery does after damage of synced data: its log cut after
    index keep, recovering from past its commit (the commit of the kept records: at most
    keep), with the term and vote it had."""
    disk = h.disks[node]
    del disk.entries[keep - disk.base :]
    hs = disk.hard_state
    commit = min(hs.commit, keep) if commit is None else commit
    disk.hard_state = HardState(hs.term, hs.vote, commit, commit + 1)
    return h.restart(node)


def vote_answer(h: Harness, node: NodeId, pre_vote: bool) -> RequestVoteResponse:
    """node's answer to a request from c for a vote in its next term (a transfer's, which
    no leader lease holds back)."""
    raft = h.nodes[node]
    raft.step(RequestVote(raft.term + 1, "c", node, 99, 99, pre_vote, transfer=True))
    [answer] = [m for m in h.process(node) if isinstance(m, RequestVoteResponse)]
    return answer


def replicated(h: Harness, leader: NodeId, *datas: bytes) -> None:
    for data in datas:
        h.nodes[leader].propose(data)
    h.drain()
    h.tick(leader)  # the commit index reaches the followers


def events(h: Harness, node: NodeId, kind: TraceKind) -> list[int]:
    return [ev.index for rd in h.readies[node] for ev in rd.events if ev.kind is kind]


def test_a_recovering_node_votes_for_no_one_and_never_campaigns() -> None:
    h = Harness()
    h.elect("a")
    replicated(h, "a", b"x", b"y")
    b = lose(h, "b", keep=1)
    assert b.lost_from == 2 and b.status().lost_from == 2
    assert not vote_answer(h, "b", pre_vote=True).granted
    assert not vote_answer(h, "b", pre_vote=False).granted
    assert b.vote is None  # the real request raised its term, and it voted for no one
    h.isolate("b")
    h.tick("b", 5 * CONFIG.election_ticks)
    assert b.role is Role.FOLLOWER, "a recovering node must not campaign (it votes for itself)"
    b.step(TimeoutNow(b.term, "c", "b"))
    assert b.role is Role.FOLLOWER
    assert events(h, "b", TraceKind.RECOVERING) == [2]


def test_the_leader_forgets_what_it_knew_and_the_follower_gets_it_back() -> None:
    h = Harness()
    a = h.elect("a")
    replicated(h, "a", b"x", b"y")
    assert a.progress["b"].match == 3
    h.isolate("b")  # b restarts, lost everything after index 1 (its commit is 3: kept 1)
    lose(h, "b", keep=1)
    h.heal()
    h.tick("a")  # a heartbeat: b answers that it is recovering
    assert events(h, "a", TraceKind.PEER_RECOVERING) == [2]
    # match went down, then back up as b fetched the entries again; b heard it is done.
    b = h.nodes["b"]
    assert [e.data for e in b.log.entries] == [b"", b"x", b"y"]
    assert b.lost_from == 0 and events(h, "b", TraceKind.RECOVERED) == [2]
    assert h.disks["b"].hard_state.lost_from == 0
    assert a.progress["b"].match == 3 and a.progress["b"].recover_epoch == 0
    assert vote_answer(h, "b", pre_vote=False).granted  # and it votes again


def test_the_leader_resets_match_only_on_an_explicit_loss_report() -> None:
    h = Harness()
    a = h.elect("a")
    replicated(h, "a", b"x", b"y")
    pr = a.progress["b"]
    # An ordinary rejection below match (say, reordered) does not move match down.
    a.step(AppendEntriesResponse(a.term, "b", "a", False, 2, 1, 1))
    assert pr.match == 3
    # A recovering follower's report does.
    a.step(AppendEntriesResponse(a.term, "b", "a", False, 3, 1, 1, lost_from=2, recover_epoch=7))
    assert (pr.match, pr.recover_epoch, pr.recover_to) == (1, 7, 3)
    assert a.status().peers["b"].recovering
    # An acknowledgement without the epoch may be from before the loss: not counted.
    a.step(AppendEntriesResponse(a.term, "b", "a", True, 3))
    assert pr.match == 1
    # Acknowledgements of this recovery count.
    a.step(AppendEntriesResponse(a.term, "b", "a", True, 2, lost_from=2, recover_epoch=7))
    assert pr.match == 2 and pr.recover_epoch == 7
    a.step(AppendEntriesResponse(a.term, "b", "a", True, 3, lost_from=2, recover_epoch=7))
    assert (pr.match, pr.recover_epoch, pr.recover_done) == (3, 0, 7)
    # A duplicate of the old report, after it was done, starts nothing.
    a.step(HeartbeatResponse(a.term, "b", "a", lost_from=2, recover_epoch=7))
    assert (pr.match, pr.recover_epoch) == (3, 0)


def test_a_recovering_follower_is_not_counted_for_what_it_lost() -> None:
    """x reached only b (c, d, e are away): not committed yet. b loses it, and tells the
    leader. When d gets x too, x is on two disks: it must not count as committed (b's old
    acknowledgement would have made three). Once b holds x again, it is."""
    h = Harness(ids="abcde")
    a = h.elect("a")
    for n in "cde":
        h.isolate(n)
    a.propose(b"x")
    h.drain()
    assert (a.progress["b"].match, a.log.committed) == (2, 1)
    h.isolate("b")
    b = lose(h, "b", keep=1)
    b.step(Heartbeat(a.term, "a", "b", 1))  # b answers a heartbeat: its report
    [report] = b.ready().messages
    assert isinstance(report, HeartbeatResponse) and report.lost_from == 2
    a.step(report)
    assert a.progress["b"].match == 1
    h.cut -= {("a", "d"), ("d", "a")}
    h.tick("a")
    assert h.nodes["d"].log.last_index() == 2 and a.progress["d"].match == 2
    assert a.log.committed == 1, "b's acknowledgement from before its loss was counted"
    h.cut -= {("a", "b"), ("b", "a")}
    h.tick("a")
    assert a.log.committed == 2 and b.log.entry(2).data == b"x" and b.lost_from == 0


def test_a_recovering_follower_commits_only_what_an_append_checked() -> None:
    """Its log past the loss may hold entries that were since replaced: a heartbeat's commit
    index (which trusts the leader's match) must not commit them."""
    h = Harness()
    a = h.elect("a")
    replicated(h, "a", b"x")
    h.isolate("b")
    b = lose(h, "b", keep=2, commit=1)  # b kept x, but the record committing it is gone
    assert (b.log.last_index(), b.log.committed, b.lost_from) == (2, 1, 2)
    b.step(Heartbeat(a.term, "a", "b", 2, 0))
    assert b.log.committed == 1
    h.heal()
    h.tick("a")
    assert b.log.committed == 2 and b.lost_from == 0


def test_a_restart_while_recovering_keeps_recovering_with_a_new_epoch() -> None:
    h = Harness()
    a = h.elect("a")
    replicated(h, "a", b"x", b"y")
    h.isolate("b")
    b = lose(h, "b", keep=1)
    h.heal()
    h.tick("a")
    h.isolate("b")
    replicated(h, "a", b"z")
    first = a.progress["b"].recover_done
    b = lose(h, "b", keep=2)  # damaged again, before it got z
    assert b.lost_from == 3
    h.heal()
    h.tick("a")
    assert a.progress["b"].recover_done not in (0, first)
    assert b.lost_from == 0 and [e.data for e in b.log.entries][-1] == b"z"


def test_an_old_report_to_a_new_leader_is_dropped_after_an_election_timeout() -> None:
    """A report delayed in the network reaches a leader after the follower recovered: the
    leader starts tracking it, and gives up once the follower, which answers, has said
    nothing of it for an election timeout."""
    h = Harness()
    a = h.elect("a")
    replicated(h, "a", b"x")
    a.step(HeartbeatResponse(a.term, "b", "a", lost_from=2, recover_epoch=5))  # stale
    pr = a.progress["b"]
    assert pr.recover_epoch == 5
    h.drain()
    assert pr.recover_epoch == 5 and pr.match == 1  # b's answers (no epoch) do not count
    h.tick("a", CONFIG.election_ticks + 2)
    assert pr.recover_epoch == 0 and pr.match == a.log.last_index()


def test_a_leader_will_not_transfer_to_a_recovering_follower() -> None:
    h = Harness()
    a = h.elect("a")
    a.step(HeartbeatResponse(a.term, "b", "a", lost_from=2, recover_epoch=5))
    with pytest.raises(ProposalDropped, match="recovering"):
        a.transfer_leadership("b")


def test_a_lost_vote_cannot_elect_a_leader_without_a_committed_entry() -> None:
    """x is committed on a and b only; b loses it; a stops. c (without x) campaigns: b must
    not help it (if it did, x would be gone although a client was told it was written)."""
    h = Harness()
    h.elect("a")
    h.isolate("c")
    replicated(h, "a", b"x")
    assert h.nodes["a"].log.committed == 2 and h.nodes["c"].log.last_index() == 1
    h.down.add("a")
    lose(h, "b", keep=1)
    h.heal()
    h.wait_out_start_hold()
    h.nodes["c"].campaign()
    h.drain()
    h.tick_all(3 * CONFIG.election_ticks)
    assert h.leaders() == []
    h.down.discard("a")
    h.restart("a")
    h.wait_out_start_hold()
    for _ in range(10):
        h.tick_all(CONFIG.election_ticks)
        if h.leaders():
            break
    [leader] = h.leaders()
    assert leader == "a"  # the only node holding x that may be elected
    h.tick(leader)
    assert all(h.nodes[n].log.entry(2).data == b"x" for n in "abc")
