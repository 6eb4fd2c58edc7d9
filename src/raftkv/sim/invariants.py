"""Raft's safety properties (paper Figure 3), checked incrementally after every event.

- Election safety: at most one leader per term.
- Leader append-only: a leader never overwrites or deletes entries in its log.
- Log matching: equal (index, term) implies identical logs up to that index.
- Leader completeness: a leader's log holds every entry committed before its term.
- State machine safety: no two nodes apply different entries at the same index.
Plus: commit and apply indexes never go backwards within one incarnation of a node, an entry
is committed only once a majority holds it on disk, and no message promises state that is not
yet on the sender's disk (a granted vote, an acknowledged entry).

A node whose synced data was damaged (on_damage) no longer holds what it acknowledged. A
leader that counted those acknowledgements before it could know is not at fault: its commits
count the lost entries as held, until it has processed the node's report of the loss
(learned); from then on only what the node holds again counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from raftkv.core.messages import AppendEntriesResponse, Message, RequestVoteResponse
from raftkv.core.raft import RaftNode
from raftkv.core.types import Entry, NodeId, Role
from raftkv.sim.disk import SimDisk


@dataclass(slots=True)
class _Seen:
    """What the checker remembers of one node incarnation."""

    checked_upto: int = 0  # log entries [1, checked_upto] passed the log-matching check
    last_checked: Entry | None = None  # the entry at checked_upto when it was checked
    commit: int = 0
    applied: int = 0
    leader_term: int = 0
    leader_len: int = 0  # last index and entry when last seen leading leader_term
    leader_last: Entry | None = None


class SafetyChecker:
    def __init__(self, voters: int, *, check_promises: bool = True) -> None:
        self.voters = voters
        self.check_promises = check_promises
        self.violations: list[str] = []
        self._leaders: dict[int, NodeId] = {}  # term -> the one leader of that term
        self._canon: dict[
            tuple[int, int], tuple[int, bytes]
        ] = {}  # (index, term) -> (prev term, data)
        self._committed: dict[int, Entry] = {}  # index -> the entry committed there
        self._applied: dict[int, Entry] = {}  # index -> the entry applied there
        self._seen: dict[NodeId, _Seen] = {}
        # Entries each damaged node held on disk before the damage, and the (leader, term,
        # node) whose leader may still count that node's acknowledgements from before it.
        self._held_before: dict[NodeId, set[tuple[int, int]]] = {}
        self._stale: set[tuple[NodeId, int, NodeId]] = set()
        self._learned: set[tuple[NodeId, NodeId]] = set()  # takes effect after this event

    def on_damage(self, node: NodeId, disk: SimDisk, leading: list[tuple[NodeId, int]]) -> None:
        """Synced data of node was damaged (it is down): what its disk held may be gone.
        leading: (id, term) of the leaders at the time, whose view of it may go stale."""
        held = self._held_before.setdefault(node, set())
        held |= {(e.index, e.term) for e in disk.entries}
        self._stale |= {(lead, term, node) for lead, term in leading if lead != node}

    def learned(self, leader: NodeId, nodes: set[NodeId]) -> None:
        """leader has processed these nodes' reports that they lost synced data (from the
        next event on, it must no longer count what they acknowledged before)."""
        self._learned |= {(leader, node) for node in nodes}

    def fail(self, message: str) -> None:
        self.violations.append(message)

    def forget(self, node: NodeId) -> None:
        """The node crashed: its next incarnation starts fresh volatile marks."""
        self._seen.pop(node, None)

    def on_send(self, node: NodeId, raft: RaftNode, disk: SimDisk, msg: Message) -> None:
        """A promise leaves the node: what it promises must already be durable."""
        # A promise made in term T is kept by a durable later term too: the node then refuses
        # everything from term T, so it can neither vote again nor be rolled back in T.
        if not self.check_promises or disk.hard_state.term > msg.term:
            return
        match msg:
            case RequestVoteResponse(granted=True, pre_vote=False):
                hs = disk.hard_state
                if (hs.term, hs.vote) != (msg.term, msg.dst):
                    self.fail(
                        f"durability: {node} granted its term-{msg.term} vote to {msg.dst} "
                        f"with ({hs.term}, {hs.vote}) on disk"
                    )
            case AppendEntriesResponse(success=True, index=index) if index > 0:
                term = raft.log.term(index)
                if term is not None and not disk.has(index, term):
                    self.fail(f"durability: {node} acknowledged index {index} before writing it")
            case _:
                pass

    def on_snapshot(self, node: NodeId, index: int) -> None:
        """The node's state machine jumped to a snapshot at index (restart or install)."""
        seen = self._seen.setdefault(node, _Seen())
        seen.applied = index

    def on_apply(self, node: NodeId, entry: Entry) -> None:
        prior = self._applied.setdefault(entry.index, entry)
        if prior != entry:
            self.fail(
                f"state machine safety: {node} applied (term {entry.term}) at index "
                f"{entry.index}, another node applied (term {prior.term})"
            )
        seen = self._seen.setdefault(node, _Seen())
        if entry.index != seen.applied + 1 and seen.applied:
            self.fail(f"apply order: {node} applied {entry.index} after {seen.applied}")
        seen.applied = entry.index

    def check(self, nodes: Mapping[NodeId, RaftNode], disks: Mapping[NodeId, SimDisk]) -> None:
        for nid, raft in nodes.items():
            seen = self._seen.setdefault(nid, _Seen())
            self._check_log_matching(nid, raft, seen)
            self._check_marks(nid, raft, seen)
            if raft.role is Role.LEADER:
                self._check_leader(nid, raft, seen)
            self._check_commits(nid, raft, disks)
        if self._learned:
            self._stale = {(a, t, b) for a, t, b in self._stale if (a, b) not in self._learned}
            self._learned.clear()

    # --- the properties -------------------------------------------------------------------

    def _check_log_matching(self, nid: NodeId, raft: RaftNode, seen: _Seen) -> None:
        log = raft.log
        last = log.last_index()
        if seen.checked_upto > last or (
            seen.checked_upto > log.snapshot_index
            and log.entry(seen.checked_upto) != seen.last_checked
        ):
            seen.checked_upto = 0  # the log was truncated: recheck from the start
        for index in range(max(seen.checked_upto, log.snapshot_index) + 1, last + 1):
            entry = log.entry(index)
            prev_term = log.term(index - 1) or 0
            canon = self._canon.setdefault((index, entry.term), (prev_term, entry.data))
            if canon != (prev_term, entry.data):
                self.fail(
                    f"log matching: {nid} has (index {index}, term {entry.term}) with a "
                    f"different predecessor term or data than another node"
                )
        seen.checked_upto = last
        seen.last_checked = log.entry(last) if last > log.snapshot_index else None

    def _check_marks(self, nid: NodeId, raft: RaftNode, seen: _Seen) -> None:
        if raft.log.committed < seen.commit:
            self.fail(f"commit went backwards on {nid}: {seen.commit} -> {raft.log.committed}")
        seen.commit = raft.log.committed

    def _check_leader(self, nid: NodeId, raft: RaftNode, seen: _Seen) -> None:
        holder = self._leaders.setdefault(raft.term, nid)
        if holder != nid:
            self.fail(f"election safety: {holder} and {nid} both led term {raft.term}")
        log = raft.log
        if seen.leader_term == raft.term:
            n = seen.leader_len
            if log.last_index() < n or (
                n > log.snapshot_index and log.entry(n) != seen.leader_last
            ):
                self.fail(f"leader append-only: {nid} rewrote its log in term {raft.term}")
        else:
            # Newly elected: its log must contain every entry committed so far.
            for index, entry in self._committed.items():
                if index > raft.log.snapshot_index and raft.log.term(index) != entry.term:
                    self.fail(
                        f"leader completeness: {nid} leads term {raft.term} without committed "
                        f"entry {index} (term {entry.term})"
                    )
                    break
        seen.leader_term = raft.term
        seen.leader_len = log.last_index()
        seen.leader_last = (
            log.entry(seen.leader_len) if seen.leader_len > log.snapshot_index else None
        )

    def _check_commits(self, nid: NodeId, raft: RaftNode, disks: Mapping[NodeId, SimDisk]) -> None:
        """Record newly committed entries; every node's committed prefix must agree."""
        log = raft.log
        for index in range(log.committed, log.snapshot_index, -1):
            entry = log.entry(index)
            known = self._committed.get(index)
            if known is not None:
                if known != entry:
                    self.fail(
                        f"committed entry {index} is term {entry.term} on {nid} but term "
                        f"{known.term} elsewhere"
                    )
                break
            self._committed[index] = entry
            voters = raft.voters
            on_disk = sum(
                1
                for v in voters
                if disks[v].has(index, entry.term)
                or (
                    (nid, raft.term, v) in self._stale
                    and (index, entry.term) in self._held_before.get(v, ())
                )
            )
            if raft.role is Role.LEADER:
                # Seen where it was decided: the leader counted under its own configuration,
                # the one it has now (a leader never truncates its log), so a true majority.
                needed = len(voters) // 2 + 1
            else:
                # First seen on a follower (the leader crashed in the same event): its
                # configuration may differ from the leader's by one voter (single-server
                # changes), so require a majority of the smaller of its neighbours.
                needed = min(len(voters) // 2 + 1, (len(voters) - 1) // 2 + 1)
            if on_disk < needed:
                self.fail(
                    f"durability: {nid} committed index {index} (term {entry.term}) held on "
                    f"only {on_disk} disks; {len(voters)} voters need {needed}"
                )
