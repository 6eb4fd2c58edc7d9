"""Cluster membership: voters (count for elections and commits) and learners (replicated to,
never counted). Changes are single-server steps (Ongaro's dissertation, 4.1): add a learner,
promote a learner to voter, remove a member. Any two consecutive configurations then share a
majority, so no joint consensus is needed.

A CONFIG log entry carries the change and the whole configuration it produces; a node uses the
latest configuration in its log, committed or not (dissertation 4.1), and falls back to the one
before when that entry is truncated away.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import msgspec

from raftkv.core.types import NodeId
from raftkv.errors import BadRequest


class ConfChangeKind(enum.Enum):
    ADD_LEARNER = "add-learner"
    PROMOTE = "promote"
    REMOVE = "remove"


class ConfChange(msgspec.Struct, frozen=True, array_like=True):
    kind: ConfChangeKind
    node: NodeId
    # Opaque to the core: what the shell needs to reach the node (e.g. its addresses).
    context: str = ""


@dataclass(frozen=True, slots=True)
class Membership:
    voters: tuple[NodeId, ...]
    learners: tuple[NodeId, ...] = ()

    @staticmethod
    def of(
        voters: tuple[NodeId, ...] | list[NodeId], learners: tuple[NodeId, ...] | list[NodeId] = ()
    ) -> Membership:
        return Membership(tuple(sorted(set(voters))), tuple(sorted(set(learners) - set(voters))))

    @property
    def members(self) -> tuple[NodeId, ...]:
        return self.voters + self.learners

    def apply(self, change: ConfChange) -> Membership:
        """The configuration after change; BadRequest if the change makes no sense here."""
        node = change.node
        match change.kind:
            case ConfChangeKind.ADD_LEARNER:
                if node in self.members:
                    raise BadRequest(f"{node} is already a member")
                return Membership.of(self.voters, (*self.learners, node))
            case ConfChangeKind.PROMOTE:
                if node not in self.learners:
                    raise BadRequest(f"{node} is not a learner (add it as a learner first)")
                rest = tuple(n for n in self.learners if n != node)
                return Membership.of((*self.voters, node), rest)
            case ConfChangeKind.REMOVE:
                if node not in self.members:
                    raise BadRequest(f"{node} is not a member")
                if self.voters == (node,):
                    raise BadRequest(f"{node} is the last voter; it cannot be removed")
                return Membership.of(
                    tuple(n for n in self.voters if n != node),
                    tuple(n for n in self.learners if n != node),
                )


class ConfEntry(msgspec.Struct, frozen=True, array_like=True):
    """The data of a CONFIG log entry."""

    change: ConfChange
    voters: tuple[NodeId, ...]
    learners: tuple[NodeId, ...]

    @property
    def membership(self) -> Membership:
        return Membership(self.voters, self.learners)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ConfEntry)


def encode_conf_entry(change: ConfChange, result: Membership) -> bytes:
    return _encoder.encode(ConfEntry(change, result.voters, result.learners))


def decode_conf_entry(data: bytes) -> ConfEntry:
    """Config entries are written by leaders of this cluster; garbage here is a bug, not input."""
    return _decoder.decode(data)
