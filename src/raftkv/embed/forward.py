"""Followers forward apply, ReadIndex and membership requests to the leader, over HTTP on each
node's api address (the peer TCP transport carries only Raft messages).

Every request carries the cluster id; a node of another cluster answers 403 and nothing is
done. A forwarded request is served only by the leader (a non-leader answers not_leader with
its hint, never forwarding again), so requests cannot loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import msgspec
from aiohttp import web

from raftkv.client.http import client_session
from raftkv.core.membership import ConfChange
from raftkv.embed.protocol import ENCODER, ForwardReply, Outcome, decode_reply
from raftkv.errors import (
    BadRequest,
    CallerError,
    DiskError,
    NoQuorum,
    NotLeader,
    ProposalDropped,
    Timeout,
    WrongCluster,
)
from raftkv.runtime.faults import NetFaults
from raftkv.runtime.node import NodeStopped, RaftRuntime
from raftkv.runtime.settings import NodeSettings

APPLY_PATH = "/raftkv/embed/v1/apply"
READ_PATH = "/raftkv/embed/v1/read-index"
MEMBER_PATH = "/raftkv/embed/v1/member"
CLUSTER_HEADER = "X-Raftkv-Cluster"
FROM_HEADER = "X-Raftkv-From"
MSGPACK = "application/msgpack"
MAX_COMMAND_SIZE = 4 * 1024 * 1024

# Codes a follower synthesizes when the leader could not answer.
UNREACHABLE = "unreachable"  # never connected: nothing was sent
UNKNOWN = "unknown"  # sent, but no answer: the outcome is unknown


class _ReadRequest(msgspec.Struct, frozen=True, array_like=True):
    lease: bool = False


_READ_DECODER = msgspec.msgpack.Decoder(_ReadRequest)
_CHANGE_DECODER = msgspec.msgpack.Decoder(ConfChange)

# The leader's membership change: (change, timeout) -> the log index it committed at.
ChangeMembers = Callable[[ConfChange, float], Awaitable[int]]


class ForwardServer:
    """The leader's side: routes on the node's api address."""

    def __init__(
        self,
        settings: NodeSettings,
        runtime: RaftRuntime[Any, Outcome],
        change_members: ChangeMembers | None = None,
    ) -> None:
        self._settings = settings
        self._runtime = runtime
        self._change_members = change_members
        self._timeout = settings.request_timeout_s

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_COMMAND_SIZE + 1024)
        app.router.add_post(APPLY_PATH, self._apply)
        app.router.add_post(READ_PATH, self._read_index)
        if self._change_members is not None:
            app.router.add_post(MEMBER_PATH, self._member)
        return app

    def _refuse(self, request: web.Request) -> web.Response | None:
        cluster = request.headers.get(CLUSTER_HEADER)
        if cluster != self._settings.cluster_id:
            return web.Response(
                status=403,
                text=f"wrong cluster: this is {self._settings.cluster_id!r}, not {cluster!r}",
            )
        return None

    async def _apply(self, request: web.Request) -> web.Response:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        body = await request.read()
        try:
            async with asyncio.timeout(self._timeout):
                outcome, index = await self._runtime.propose(body)
        except TimeoutError:
            return self._reply(ForwardReply("timeout", message="not applied in time: unknown"))
        except (CallerError, DiskError) as e:
            return self._reply(self._error(e))
        return self._reply(ForwardReply("ok", index=index, outcome=outcome))

    async def _read_index(self, request: web.Request) -> web.Response:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        try:
            req = _READ_DECODER.decode(await request.read())
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            return self._reply(ForwardReply("bad_request", message=str(e)))
        try:
            async with asyncio.timeout(self._timeout):
                # The asking follower waits to apply index: send it our commit index at once.
                asking = request.headers.get(FROM_HEADER)
                index = await self._runtime.read_barrier(lease=req.lease, for_peer=asking)
        except TimeoutError:
            return self._reply(ForwardReply("timeout", message="leadership not confirmed"))
        except (CallerError, DiskError) as e:
            return self._reply(self._error(e))
        return self._reply(ForwardReply("ok", index=index))

    async def _member(self, request: web.Request) -> web.Response:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        assert self._change_members is not None
        try:
            change = _CHANGE_DECODER.decode(await request.read())
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            return self._reply(ForwardReply("bad_request", message=str(e)))
        try:
            async with asyncio.timeout(self._timeout):
                index = await self._change_members(change, self._timeout)
        except TimeoutError:
            return self._reply(ForwardReply("timeout", message="change not committed in time"))
        except (CallerError, DiskError) as e:
            return self._reply(self._error(e))
        return self._reply(ForwardReply("ok", index=index))

    def _error(self, e: Exception) -> ForwardReply:
        leader = self._runtime.leader
        match e:
            case NotLeader():
                return ForwardReply("not_leader", leader=e.leader or leader, message=str(e))
            case ProposalDropped():
                return ForwardReply("dropped", leader=leader, message=str(e))
            case NoQuorum():
                return ForwardReply("no_quorum", leader=leader, message=str(e))
            case Timeout():
                return ForwardReply("timeout", leader=leader, message=str(e))
            case NodeStopped() | DiskError():
                return ForwardReply("stopped", message=str(e))
            case _:
                return ForwardReply("bad_request", message=str(e))

    @staticmethod
    def _reply(reply: ForwardReply) -> web.Response:
        return web.Response(body=ENCODER.encode(reply), content_type=MSGPACK)


class ForwardClient:
    """The follower's side: one pooled HTTP client session."""

    def __init__(self, settings: NodeSettings, faults: NetFaults) -> None:
        self._settings = settings
        self._faults = faults
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = client_session(
                connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30),
                headers={
                    CLUSTER_HEADER: self._settings.cluster_id,
                    FROM_HEADER: self._settings.node_id,
                    "Content-Type": MSGPACK,
                },
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def apply(self, leader: str, envelope: bytes, timeout: float) -> ForwardReply:
        return await self._post(leader, APPLY_PATH, envelope, timeout)

    async def read_index(self, leader: str, lease: bool, timeout: float) -> ForwardReply:
        return await self._post(leader, READ_PATH, ENCODER.encode(_ReadRequest(lease)), timeout)

    async def change_members(self, leader: str, change: ConfChange, timeout: float) -> ForwardReply:
        return await self._post(leader, MEMBER_PATH, ENCODER.encode(change), timeout)

    async def _post(self, leader: str, path: str, body: bytes, timeout: float) -> ForwardReply:
        addr = self._settings.peers.get(leader)
        if addr is None:
            return ForwardReply(UNREACHABLE, message=f"leader {leader!r} is not a known peer")
        if self._faults.blocks(leader):
            return ForwardReply(UNREACHABLE, message=f"leader {leader} is cut off (injected)")
        try:
            async with self._client().post(
                addr.http_url + path, data=body, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as resp:
                payload = await resp.read()
                if resp.status == 403:
                    raise WrongCluster(f"{leader} refused: {payload.decode(errors='replace')}")
                if resp.status != 200:
                    return ForwardReply(UNKNOWN, message=f"leader {leader} answered {resp.status}")
        except aiohttp.ClientConnectorError as e:
            return ForwardReply(UNREACHABLE, message=f"leader {leader} unreachable: {e.os_error}")
        except TimeoutError:
            return ForwardReply(UNKNOWN, message=f"leader {leader} did not answer in {timeout:g}s")
        except (aiohttp.ClientError, asyncio.IncompleteReadError, OSError) as e:
            return ForwardReply(UNKNOWN, message=f"connection to leader {leader} failed: {e}")
        try:
            return decode_reply(payload)
        except BadRequest as e:
            return ForwardReply(UNKNOWN, message=str(e))
