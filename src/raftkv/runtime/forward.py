"""One forwarding protocol between nodes: a follower asks the leader to do what only the
leader can, and gets the result back. The KV server (http_api.py, members_api.py) and the
embedded library (embed/node.py) both use it; docs/http.md describes it for operators.

    POST /v1/internal/{op} on the leader's HTTP address, msgpack body
      X-Raftkv-Cluster        the cluster id: a node of another cluster answers 403
      X-Raftkv-Forwarded-By   the asking node (a member: admission.py puts it in the peer
                              budget; a read barrier sends it our commit index at once)
      X-Raftkv-Peer-Key       with bearer tokens and no TLS: forward_key (admission.py)
      Authorization, X-Raftkv-Identity    the original client's credential (auth on): the
                              leader authorizes the client again, for the role the op needs

    op            body                       answer (200, msgpack [index, result])
    propose       an encoded command         its log index, the state machine's result
    read-index    [lease]                    the index to apply before reading
    member        a ConfChange               the change's index, the shell's result
    members, transfer (KV server only)       -, a JSON document

An error answer is the public JSON error (http_errors.py); the follower raises the same
exception again (exception_from), so a client sees what the leader said. Only the leader
serves these routes (another node answers 503 no_leader: nothing is forwarded twice).

Outcomes at the follower: a connection refused (or cut off by an injected fault) sent nothing:
NotLeader, retry. A request sent but unanswered in time is a Timeout, one whose connection
broke mid-way ForwardFailed: for a write, both mean the outcome is unknown (it may commit).
POST is never resent by the HTTP client, so a request reaches the leader at most once.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec

from raftkv.client.http import client_session
from raftkv.core.types import NodeId
from raftkv.errors import (
    BadRequest,
    Forbidden,
    ForwardFailed,
    NotLeader,
    RaftkvError,
    Timeout,
    WrongCluster,
)
from raftkv.runtime.admission import HOP_HEADER, PEER_KEY_HEADER, PeerPolicy
from raftkv.runtime.conn_guard import FORWARD_POOL
from raftkv.runtime.faults import NetFaults
from raftkv.runtime.http_errors import exception_from, timeout_error
from raftkv.runtime.http_types import Request, Response, Router
from raftkv.runtime.node import RaftRuntime
from raftkv.runtime.settings import PeerAddress
from raftkv.security.auth import FORWARDED_IDENTITY_HEADER, Identity, forwarded_value

INTERNAL_PREFIX = "/v1/internal/"
PROPOSE, READ_INDEX, MEMBER, MEMBERS, TRANSFER = (
    "propose",
    "read-index",
    "member",
    "members",
    "transfer",
)
CLUSTER_HEADER = "X-Raftkv-Cluster"
LEADER_HEADER = "X-Raftkv-Leader"  # on a follower's answers to forwarded requests
_CLUSTER, _HOP, _PEER_KEY = CLUSTER_HEADER.lower(), HOP_HEADER.lower(), PEER_KEY_HEADER.lower()
MAX_FORWARD_BODY = 4 * 1024 * 1024 + 64 * 1024  # the largest command (embedded) + envelope
MSGPACK = "application/msgpack"

_encoder = msgspec.msgpack.Encoder()


class OpAnswer(msgspec.Struct, frozen=True, array_like=True):
    """The leader's answer to one op."""

    index: int = 0
    result: bytes = b""


class _Lease(msgspec.Struct, frozen=True, array_like=True):
    lease: bool = False


class _Transfer(msgspec.Struct, frozen=True, array_like=True):
    to: str | None = None


_answers = msgspec.msgpack.Decoder(OpAnswer)
_leases = msgspec.msgpack.Decoder(_Lease)
_transfers = msgspec.msgpack.Decoder(_Transfer)


def encode_answer(index: int, result: bytes = b"") -> bytes:
    return _encoder.encode(OpAnswer(index, result))


def encode_transfer(to: str | None) -> bytes:
    return _encoder.encode(_Transfer(to))


def decode_transfer(body: bytes) -> str | None:
    request: _Transfer = _decode(_transfers, body, "transfer")
    return request.to


def _decode(decoder: msgspec.msgpack.Decoder[Any], body: bytes, what: str) -> Any:
    try:
        return decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise BadRequest(f"malformed {what} request: {e}") from None


@dataclass(frozen=True, slots=True)
class Caller:
    """The original client of a forwarded request, as the leader must see it again."""

    authorization: str | None = None  # a bearer token, passed on as is
    identity: Identity | None = None  # known by its client certificate (only this node saw it)

    def headers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.authorization is not None:
            out["Authorization"] = self.authorization
        elif self.identity is not None and self.identity.via != "token":
            out[FORWARDED_IDENTITY_HEADER] = forwarded_value(self.identity)
        return out


# --- the follower's side ----------------------------------------------------------------------


class ForwardClient:
    """Calls ops at the leader over one pooled HTTP client (TLS with this node's certificate
    when TLS is on)."""

    def __init__(
        self,
        node_id: str,
        cluster_id: str,
        address_of: Callable[[str], PeerAddress | None],
        faults: NetFaults,
        *,
        ssl_context: ssl.SSLContext | None = None,
        peer_key: str | None = None,
    ) -> None:
        self._address_of = address_of
        self._faults = faults
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._headers = {CLUSTER_HEADER: cluster_id, HOP_HEADER: node_id, "Content-Type": MSGPACK}
        if peer_key is not None:
            self._headers[PEER_KEY_HEADER] = peer_key
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = client_session(
                connector=aiohttp.TCPConnector(
                    limit=FORWARD_POOL, keepalive_timeout=30, ssl=self._ssl
                ),
                headers=self._headers,
                auto_decompress=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(
        self,
        leader: NodeId,
        op: str,
        body: bytes,
        timeout: float,
        *,
        write: bool,
        caller: Caller | None = None,
    ) -> OpAnswer:
        """The leader's answer to op, or the error it answered (raised again here), or
        NotLeader (nothing was sent), Timeout / ForwardFailed (sent: for a write, the
        outcome is unknown)."""
        addr = self._address_of(leader)
        if addr is None:
            raise NotLeader(f"leader {leader} has no known address; retry", leader)
        if self._faults.blocks(leader):
            raise NotLeader(f"cannot reach leader {leader} (network fault)", leader)
        unknown = "the write's outcome is unknown" if write else "no write was involved"
        headers = caller.headers() if caller is not None else None
        try:
            async with self._client().post(
                addr.http_url + INTERNAL_PREFIX + op,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as resp:
                payload = await resp.read()
                status = resp.status
        except aiohttp.ClientConnectorError as e:
            # Never connected, so nothing was sent: safe to retry.
            raise NotLeader(
                f"leader {leader} is unreachable at {addr.http_url}: {e.os_error}", leader
            ) from None
        except TimeoutError:
            raise Timeout(f"leader {leader} did not answer in {timeout:g}s; {unknown}") from None
        except (aiohttp.ClientError, asyncio.IncompleteReadError, OSError) as e:
            raise ForwardFailed(
                f"connection to leader {leader} failed mid-request ({e}); {unknown}"
            ) from None
        if status == 200:
            try:
                answer: OpAnswer = _answers.decode(payload)
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                raise ForwardFailed(
                    f"malformed answer from leader {leader} ({e}); {unknown}"
                ) from None
            return answer
        raise _error(status, payload, leader, unknown)


def _error(status: int, payload: bytes, leader: str, unknown: str) -> RaftkvError:
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("error"), str):
        return ForwardFailed(f"leader {leader} answered HTTP {status}; {unknown}")
    return exception_from(status, doc)


# --- the leader's side ------------------------------------------------------------------------

# (body, asking node) -> (index, result): one op at the leader; raises RaftkvError.
Op = Callable[[bytes, str | None], Awaitable[tuple[int, bytes]]]


class ForwardServer:
    """Serves the ops on the leader: propose and read-index for every shell, plus the
    shell's own (member, and for the KV server members and transfer)."""

    def __init__(
        self,
        runtime: RaftRuntime[Any, Any],
        cluster_id: str,
        timeout_s: float,
        ops: Mapping[str, Op] | None = None,
    ) -> None:
        self._runtime = runtime
        self._cluster_id = cluster_id
        self._timeout = timeout_s
        self.ops: dict[str, Op] = {PROPOSE: self._propose, READ_INDEX: self._read_index}
        self.ops.update(ops or {})

    def admit(self, cluster: str | None, node: str | None) -> str:
        """The member asking (node: the one its certificate or headers prove, see
        admission.py): a client must not use these routes, nor a node of another cluster."""
        if node is None:
            raise Forbidden(f"{INTERNAL_PREFIX}... is for the cluster's members only")
        if cluster != self._cluster_id:
            raise WrongCluster(
                f"this node belongs to cluster {self._cluster_id!r}, not {cluster!r}"
            )
        return node

    async def serve(self, op: str, body: bytes, peer: str | None) -> bytes:
        """The msgpack answer to op (raises what the leader answers as an error)."""
        handler = self.ops.get(op)
        if handler is None:
            raise BadRequest(f"unknown forwarded operation {op!r}")
        index, result = await handler(body, peer)
        return encode_answer(index, result)

    async def _propose(self, body: bytes, peer: str | None) -> tuple[int, bytes]:
        require_leader(self._runtime)
        try:
            async with asyncio.timeout(self._timeout):
                result, index = await self._runtime.propose(body)
        except TimeoutError:
            raise timeout_error(self._timeout, write=True) from None
        return index, _encoder.encode(result)

    async def _read_index(self, body: bytes, peer: str | None) -> tuple[int, bytes]:
        lease = _decode(_leases, body, "read-index").lease
        require_leader(self._runtime)
        try:
            async with asyncio.timeout(self._timeout):
                # The asking follower waits to apply the index: send it our commit at once.
                index = await self._runtime.read_barrier(lease=lease, for_peer=peer)
        except TimeoutError:
            raise timeout_error(self._timeout, write=False) from None
        return index, b""


def add_internal_route(router: Router, server: ForwardServer, policy: PeerPolicy) -> None:
    """POST /v1/internal/{op}: server's ops, for members only (policy says who is one)."""

    async def handle(request: Request) -> Response:
        h = request.headers
        node = policy.node_of_cert(request.peercert) or policy.forwarded_by(
            h.get(_HOP), h.get(_PEER_KEY)
        )
        node = server.admit(h.get(_CLUSTER), node)
        answer = await server.serve(request.params["op"], request.body, node)
        return Response(answer, 200, MSGPACK)

    router.add("POST", INTERNAL_PREFIX + "{op}", handle, max_body=MAX_FORWARD_BODY)


def require_leader(runtime: RaftRuntime[Any, Any]) -> None:
    """NotLeader unless runtime leads: a forwarded request is never forwarded again."""
    if not runtime.is_leader:
        raise NotLeader(
            f"{runtime.id} got a forwarded request but is not the leader (leader: "
            f"{runtime.leader or 'unknown'}); retry",
            runtime.leader,
        )


def encode_lease(lease: bool) -> bytes:
    return _encoder.encode(_Lease(lease))
