"""HTTP routes for membership changes (single-server steps; the leader does them, a follower
forwards):

  GET    /v1/members[?consistency=stale]  -> 200 {"leader", "members": [...], "pending"}
  POST   /v1/members {"id", "raft_address", "http_url"}
                                          -> 200 once the node is a learner (applied on the leader)
  POST   /v1/members/{id}/promote         -> 200 once the learner is a voter;
                                             409 not_caught_up while it lags the leader
  DELETE /v1/members/{id}                 -> 200 once removed (the leader too: it then steps
                                             down, and a removed node shuts itself down)

A member is {"id", "voter", "role" (voter|learner), "raft_address", "http_url", "match_index",
"caught_up"}; "members" is the committed configuration, "pending" the one being committed
(null when none). Asking for a change that already holds answers 200 with "already": true, so
a change whose answer was lost (504) can be retried. Only one change may be in flight: another
one answers 503 (retry). A change's answer says "index": the configuration entry's log index.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from raftkv.core.membership import ConfChange, ConfChangeKind, Membership
from raftkv.errors import BadRequest, NotCaughtUp, Timeout
from raftkv.runtime.addresses import AddressBook, decode_address, decode_context, encode_context
from raftkv.runtime.forward import MEMBER, MEMBERS, Op, OpAnswer, require_leader
from raftkv.runtime.http_errors import json_bytes, json_response
from raftkv.runtime.http_types import Request, Response, Router
from raftkv.runtime.node import RaftRuntime
from raftkv.runtime.settings import parse_peers
from raftkv.runtime.txn_json import decode_json

# A learner is caught up (may be promoted) when the leader is replicating to it normally and
# its log is at most this many entries behind the leader's commit index.
PROMOTE_MAX_LAG = 1000

# (request, op, body, write) -> the leader's answer to op (forward.py), for this request
Forward = Callable[[Request, str, bytes, bool], Awaitable[OpAnswer]]
Timed = Callable[[Awaitable[Any]], Awaitable[Any]]
_changes = msgspec.msgpack.Decoder(ConfChange)
_encoder = msgspec.msgpack.Encoder()


class MembersApi:
    def __init__(
        self, node: RaftRuntime, book: AddressBook, forward: Forward, timed: Timed
    ) -> None:
        self._node = node
        self._book = book
        self._forward = forward
        self._timed = timed

    def add_routes(self, router: Router) -> None:
        router.add("GET", "/v1/members", self.list)
        router.add("POST", "/v1/members", self.add)
        router.add("POST", "/v1/members/{id}/promote", self.promote)
        router.add("DELETE", "/v1/members/{id}", self.remove)

    def ops(self) -> dict[str, Op]:
        """What a follower forwards to this node while it leads (forward.py)."""
        return {MEMBER: self._member_op, MEMBERS: self._members_op}

    # --- handlers -----------------------------------------------------------------------

    async def list(self, request: Request) -> Response:
        consistency = request.arg("consistency", "leader")
        if consistency not in ("leader", "stale"):
            raise BadRequest("consistency must be leader (the default) or stale")
        if consistency == "stale" or self._node.is_leader:
            return json_response(self.members_json())
        answer = await self._forward(request, MEMBERS, b"", False)
        return _raw_json(answer.result)

    async def add(self, request: Request) -> Response:
        doc = decode_json(request.body)
        if not isinstance(doc, dict) or not isinstance(doc.get("id"), str):
            raise BadRequest('expected {"id": ID, "raft_address": "HOST:PORT", "http_url": URL}')
        node_id = doc["id"]
        check_node_id(node_id)
        addr = decode_address(doc, f"member {node_id}")
        change = ConfChange(ConfChangeKind.ADD_LEARNER, node_id, encode_context(addr))
        return await self._apply(request, change)

    async def promote(self, request: Request) -> Response:
        change = ConfChange(ConfChangeKind.PROMOTE, request.params["id"])
        return await self._apply(request, change)

    async def remove(self, request: Request) -> Response:
        change = ConfChange(ConfChangeKind.REMOVE, request.params["id"])
        return await self._apply(request, change)

    async def _apply(self, request: Request, change: ConfChange) -> Response:
        if self._node.is_leader:
            return json_response(await self.change_here(change))
        answer = await self._forward(request, MEMBER, _encoder.encode(change), True)
        return _raw_json(answer.result)

    # --- at the leader --------------------------------------------------------------------

    async def _member_op(self, body: bytes, peer: str | None) -> tuple[int, bytes]:
        try:
            change = _changes.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise BadRequest(f"malformed membership change: {e}") from None
        doc = await self.change_here(change)
        return int(doc.get("index", 0)), json_bytes(doc)

    async def _members_op(self, body: bytes, peer: str | None) -> tuple[int, bytes]:
        require_leader(self._node)
        return 0, json_bytes(self.members_json())

    async def change_here(self, change: ConfChange) -> dict[str, Any]:
        """Make change on this leader (NotLeader if it does not lead): the members document
        once it is applied here, or at once with "already": true when it holds already."""
        require_leader(self._node)
        node_id = change.node
        raft = self._node.raft
        match change.kind:
            case ConfChangeKind.ADD_LEARNER:
                addr = decode_context(change.context)
                if addr is None:
                    raise BadRequest(f"adding {node_id} needs its addresses")
                if node_id in raft.membership.members:
                    if self._book.get(node_id) != addr:
                        raise BadRequest(
                            f"{node_id} is already a member at other addresses; remove it first"
                        )
                    return self._already(node_id, "is already a member")
                # Know the address before the entry exists: the leader replicates to it at once.
                self._book.learn(node_id, addr, raft.last_index + 1)
                try:
                    return await self._change(change)
                finally:
                    if node_id not in self._node.raft.membership.members:
                        self._book.forget(node_id)
            case ConfChangeKind.PROMOTE:
                if node_id in raft.membership.voters:
                    return self._already(node_id, "is already a voter")
                if node_id not in raft.membership.learners:
                    raise BadRequest(f"{node_id} is not a learner (add it first: POST /v1/members)")
                lag = self._lag(node_id)
                if lag is not None:
                    match, commit = lag
                    raise NotCaughtUp(
                        f"{node_id} is not caught up yet (its log reaches {match}, the leader "
                        f"has committed {commit}); wait and retry",
                        match,
                        commit,
                    )
                return await self._change(change)
            case ConfChangeKind.REMOVE:
                if node_id not in raft.membership.members:
                    return self._already(node_id, "is not a member")
                return await self._change(change)

    # --- helpers ------------------------------------------------------------------------

    async def _change(self, change: ConfChange) -> dict[str, Any]:
        try:
            _, index = await self._timed(self._node.change_membership(change))
        except Timeout:
            raise Timeout(
                f"the membership change ({change.kind.value} {change.node}) was not applied in "
                "time; its outcome is unknown: look at GET /v1/members (raftkv member list), "
                "or retry it (a change that already holds answers 200)"
            ) from None
        doc = self.members_json()
        doc.update(id=change.node, change=change.kind.value, index=index, already=False)
        return doc

    def _already(self, node_id: str, what: str) -> dict[str, Any]:
        doc = self.members_json()
        doc.update(id=node_id, already=True, message=f"{node_id} {what}")
        return doc

    def _lag(self, node_id: str) -> tuple[int, int] | None:
        """None when node_id is caught up, else (its match index, the commit index)."""
        raft = self._node.raft
        peer = raft.status().peers.get(node_id)
        commit = raft.commit_index
        if peer is None:
            return 0, commit
        if peer.state != "replicate" or commit - peer.match > PROMOTE_MAX_LAG:
            return peer.match, commit
        return None

    def members_json(self) -> dict[str, Any]:
        raft = self._node.raft
        committed = raft.membership_at(raft.commit_index)
        latest = raft.membership
        peers = raft.status().peers if raft.leader == raft.id else {}
        members = []
        for mid in committed.members:
            addr = self._book.get(mid)
            peer = peers.get(mid)
            match: int | None = peer.match if peer is not None else None
            if mid == raft.id:
                match = raft.last_index
            members.append(
                {
                    "id": mid,
                    "voter": mid in committed.voters,
                    "role": "voter" if mid in committed.voters else "learner",
                    "raft_address": "" if addr is None else f"{addr.raft_host}:{addr.raft_port}",
                    "http_url": "" if addr is None else addr.http_url,
                    "match_index": match,
                    "caught_up": None if not peers else self._lag(mid) is None,
                }
            )
        return {
            "leader": raft.leader,
            "members": members,
            "pending": None if latest == committed else _membership_json(latest),
        }


def _raw_json(body: bytes) -> Response:
    return Response(body)


def _membership_json(m: Membership) -> dict[str, list[str]]:
    return {"voters": list(m.voters), "learners": list(m.learners)}


def check_node_id(node_id: str) -> None:
    """BadRequest unless node_id is a valid id (1-64 letters, digits, - _ .)."""
    parse_peers(f"{node_id}=127.0.0.1:1@http://127.0.0.1:1")
