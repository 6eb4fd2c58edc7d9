"""Membership changes of an embedded cluster: single-server steps (add a learner, promote it,
remove a member), proposed through the runtime's change_membership (the core's
propose_conf_change, stepped inside the Ready loop, as for the KV server).

Asking for a configuration that already holds succeeds at once (after the entry that made it
so has committed), so a change whose first attempt timed out can be retried safely.
"""

from __future__ import annotations

from raftkv.core.membership import ConfChange, ConfChangeKind, Membership
from raftkv.errors import BadRequest


def already(membership: Membership, change: ConfChange) -> bool:
    """Whether change is already in effect in membership (BadRequest if it contradicts it)."""
    node = change.node
    match change.kind:
        case ConfChangeKind.ADD_LEARNER:
            if node in membership.voters:
                raise BadRequest(f"{node} is already a voter")
            return node in membership.learners
        case ConfChangeKind.PROMOTE:
            return node in membership.voters
        case ConfChangeKind.REMOVE:
            return node not in membership.members
