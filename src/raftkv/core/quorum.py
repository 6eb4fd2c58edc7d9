"""Quorum arithmetic: the commit index a majority has reached, and election outcomes.

Validated against etcd-io/raft's quorum vectors (tests/core/test_quorum.py).
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping

from raftkv.core.types import NodeId

# The commit index of an empty configuration: it places no constraint (joint consensus).
UNBOUNDED = (1 << 63) - 1


class VoteResult(enum.Enum):
    PENDING = "VotePending"
    LOST = "VoteLost"
    WON = "VoteWon"


def quorum_size(voters: int) -> int:
    return voters // 2 + 1


def committed_index(voters: Collection[NodeId], match: Mapping[NodeId, int]) -> int:
    """The largest index that at least a majority of voters have (unknown voters count as 0)."""
    if not voters:
        return UNBOUNDED
    indexes = sorted((match.get(v, 0) for v in voters), reverse=True)
    return indexes[quorum_size(len(voters)) - 1]


def vote_result(voters: Collection[NodeId], votes: Mapping[NodeId, bool]) -> VoteResult:
    """WON with a majority of yes, LOST once a majority is out of reach, else PENDING."""
    if not voters:
        return VoteResult.WON
    yes = sum(1 for v in voters if votes.get(v) is True)
    missing = sum(1 for v in voters if v not in votes)
    q = quorum_size(len(voters))
    if yes >= q:
        return VoteResult.WON
    if yes + missing >= q:
        return VoteResult.PENDING
    return VoteResult.LOST


def joint_committed_index(
    incoming: Collection[NodeId], outgoing: Collection[NodeId], match: Mapping[NodeId, int]
) -> int:
    """Joint consensus: an index is committed only when both configurations commit it."""
    return min(committed_index(incoming, match), committed_index(outgoing, match))


def joint_vote_result(
    incoming: Collection[NodeId], outgoing: Collection[NodeId], votes: Mapping[NodeId, bool]
) -> VoteResult:
    first, second = vote_result(incoming, votes), vote_result(outgoing, votes)
    if first == second:
        return first
    if VoteResult.LOST in (first, second):
        return VoteResult.LOST
    return VoteResult.PENDING
