"""A scripted fake raftkv node (aiohttp) for testing the client's routing, retry and session
logic. It is NOT a model of the real server: the e2e tests cover that.

Each FakeNode keeps a tiny store with sessions (like the real KV state machine: opened by POST
/v1/sessions, a write of an unknown session is refused with 410 and not applied, a retried seq
is answered from the cache), records every request it sees, and pops one scripted Fault per
key-value request:
  "ok"        answer normally
  "drop"      apply the write, then cut the connection before answering (outcome unknown)
  "503"       answer 503 no_leader with Retry-After (nothing applied)
  "504"       answer 504 timeout without applying
  "hang"      never answer (until the client gives up)
  "expired"   forget the request's session (as an evicting server does), then answer as usual:
              410 session_expired, nothing applied
  "400"/"413" answer bad_request / too_large
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

Fault = Literal["ok", "drop", "503", "504", "hang", "expired", "400", "413"]


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    query_string: str = ""  # as sent (query keeps one value per name)


@dataclass
class Store:
    """Shared by the nodes of one fake cluster: the 'replicated' state."""

    data: dict[str, tuple[bytes, int]] = field(default_factory=dict)  # key -> (value, mod rev)
    revision: int = 0
    applied: int = 0  # writes applied (duplicates not counted)
    sessions: dict[tuple[str, int], tuple[int, bytes, dict[str, str]]] = field(default_factory=dict)
    open_sessions: set[str] = field(default_factory=set)
    opened: int = 0  # sessions opened so far
    events: list[dict[str, Any]] = field(default_factory=list)


class FakeNode:
    def __init__(self, node_id: str, store: Store, role: str = "follower") -> None:
        self.id = node_id
        self.store = store
        self.role = role
        self.leader: str | None = None
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self.url = ""
        self._runner: web.AppRunner | None = None
        self.watch_drop_after: int | None = None  # close a watch stream after N events

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self, port: int = 0) -> None:
        """Serve on 127.0.0.1:port (0: any free port)."""
        app = web.Application(middlewares=[_json_not_found])
        app.router.add_route("*", "/v1/kv/{key:.+}", self.kv)
        app.router.add_post("/v1/txn", self.txn)
        app.router.add_post("/v1/sessions", self.open_session)
        app.router.add_get("/v1/status", self.status)
        app.router.add_get("/v1/members", self.members)
        app.router.add_post("/v1/members", self.not_implemented)
        app.router.add_post("/v1/leader/transfer", self.transfer)
        app.router.add_get("/v1/watch", self.watch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # --- handlers -------------------------------------------------------------------------

    def _record(self, request: web.Request, body: bytes) -> None:
        self.seen.append(
            Seen(
                request.method,
                request.path,
                dict(request.query),
                dict(request.headers),
                body,
                request.query_string,
            )
        )

    def _fault(self) -> Fault:
        return self.faults.pop(0) if self.faults else "ok"

    async def kv(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self._record(request, body)
        key = request.match_info["key"]
        fault = self._fault()
        if early := await self._early(fault):
            return early
        if request.method == "GET":
            item = self.store.data.get(key)
            if item is None:
                return _error(404, "not_found", f"key {key!r} does not exist")
            return web.Response(body=item[0], headers={"X-Raftkv-Revision": str(item[1])})
        prev = request.query.get("prev_revision")
        if prev is not None:
            current = self.store.data.get(key, (b"", 0))[1]
            if current != int(prev):
                return _error(409, "conflict", "precondition failed", mod_revision=current)

        def apply() -> dict[str, Any]:
            if request.method == "DELETE":
                deleted = int(self.store.data.pop(key, None) is not None)
                self.store.revision += deleted
                return {"revision": self.store.revision, "index": 1, "deleted": deleted}
            self.store.revision += 1
            self.store.data[key] = (body, self.store.revision)
            self.store.events.append(
                {"type": "put", "key": key, "value": body.decode("utf-8", "replace")}
            )
            return {"revision": self.store.revision, "index": self.store.revision}

        return await self._write(request, fault, apply)

    async def txn(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self._record(request, body)
        fault = self._fault()
        if early := await self._early(fault):
            return early
        doc = json.loads(body)

        def apply() -> dict[str, Any]:
            (cmp,) = doc["compare"]
            item = self.store.data.get(cmp["key"])
            if cmp["target"] == "version":
                ok = item is None
            else:
                ok = item is not None and item[0] == cmp["value"].encode()
            branch = doc["success"] if ok else doc["failure"]
            responses: list[dict[str, Any]] = []
            for op in branch:
                if "put" in op:
                    self.store.revision += 1
                    self.store.data[op["put"]["key"]] = (
                        op["put"]["value"].encode(),
                        self.store.revision,
                    )
                    responses.append({"put": {"prev_revision": 0}})
                else:
                    got = self.store.data.get(op["get"]["key"])
                    kvs = (
                        [] if got is None else [{"key": op["get"]["key"], "value": got[0].decode()}]
                    )
                    responses.append({"get": {"kvs": kvs}})
            return {"succeeded": ok, "revision": self.store.revision, "responses": responses}

        return await self._write(request, fault, apply)

    async def open_session(self, request: web.Request) -> web.StreamResponse:
        self._record(request, await request.read())
        self.store.opened += 1
        client_id = f"{self.store.opened}-fake"
        self.store.open_sessions.add(client_id)
        return web.json_response({"client_id": client_id, "index": self.store.opened})

    async def _early(self, fault: Fault) -> web.StreamResponse | None:
        """The answer of a fault that acts before applying anything."""
        match fault:
            case "503":
                return _error(503, "no_leader", "no leader", retry_after="0")
            case "504":
                return _error(504, "timeout", "outcome unknown")
            case "400":
                return _error(400, "bad_request", "key must not be empty")
            case "413":
                return _error(413, "too_large", "value is 2000000 bytes, the limit is 1048576")
            case "hang":
                await asyncio.sleep(3600)
        return None

    async def _write(self, request: web.Request, fault: Fault, apply: Any) -> web.StreamResponse:
        client = request.headers.get("X-Raftkv-Client")
        seq = int(request.headers.get("X-Raftkv-Seq", "0"))
        headers: dict[str, str] = {}
        if self.role != "leader" and self.leader is not None:
            headers["X-Raftkv-Leader"] = self.leader  # as a real follower's forwarded answer
        if fault == "expired" and client:
            self.store.open_sessions.discard(client)
        if client and client not in self.store.open_sessions:
            return _error(410, "session_expired", f"session {client!r} is unknown: not applied")
        cached = self.store.sessions.get((client, seq)) if client else None
        if cached is not None:
            status, payload, _ = cached
            headers["X-Raftkv-Duplicate"] = "true"
        else:
            payload = json.dumps(apply()).encode()
            status = 200
            self.store.applied += 1
            if client:
                self.store.sessions[(client, seq)] = (status, payload, {})
        if fault == "drop":
            assert request.transport is not None
            request.transport.abort()  # the write applied, the answer is lost
            await asyncio.sleep(0.05)
        return web.Response(
            status=status, body=payload, content_type="application/json", headers=headers
        )

    async def status(self, request: web.Request) -> web.StreamResponse:
        self._record(request, b"")
        return web.json_response(
            {
                "id": self.id,
                "role": self.role,
                "term": 3,
                "leader": self.leader,
                "commit_index": self.store.revision,
                "applied_index": self.store.revision,
                "last_index": self.store.revision,
                "members": [
                    {"id": self.id, "role": self.role, "match_index": 1, "reachable": True}
                ],
            }
        )

    async def members(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {
                "members": [
                    {"id": self.id, "voter": True, "raft_address": "x:1", "http_url": self.url}
                ]
            }
        )

    async def not_implemented(self, request: web.Request) -> web.StreamResponse:
        self._record(request, await request.read())
        return _error(501, "not_implemented", "membership changes are not implemented yet")

    async def transfer(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self._record(request, body)
        fault = self._fault()
        if early := await self._early(fault):
            return early
        if fault == "drop":
            assert request.transport is not None
            request.transport.abort()
            await asyncio.sleep(0.05)
        return web.json_response({"leader": json.loads(body or b"{}").get("to", "n2"), "term": 4})

    async def watch(self, request: web.Request) -> web.StreamResponse:
        self._record(request, b"")
        start = int(request.query.get("from_revision", "1"))
        prefixes = request.query.getall("prefix", [""])
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        sent = 0
        for rev, ev in enumerate(self.store.events, start=1):
            if rev < start:
                continue
            # As the server does: once per watch (prefix) the event matches, in watch order.
            for watch, prefix in enumerate(prefixes):
                if not ev["key"].startswith(prefix):
                    continue
                doc = {
                    "watch": watch,
                    "type": ev["type"],
                    "revision": ev.get("revision", rev),
                    "kv": {"key": ev["key"], "value": ev["value"]},
                    "prev_kv": None,
                }
                await resp.write(f"event: {ev['type']}\ndata: {json.dumps(doc)}\n\n".encode())
                await resp.write(b": keepalive\n\n")
                sent += 1
                if self.watch_drop_after is not None and sent >= self.watch_drop_after:
                    self.watch_drop_after = None
                    assert request.transport is not None
                    request.transport.abort()
                    return resp
        await asyncio.sleep(3600)
        return resp


@web.middleware
async def _json_not_found(request: web.Request, handler: Any) -> web.StreamResponse:
    """Unknown routes answer raftkv's JSON 404, as a real node does (runtime/http_errors.py)."""
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPNotFound:
        return _error(404, "not_found", f"no route {request.path}")
    return response


def _error(
    status: int, code: str, message: str, retry_after: str | None = None, **extra: Any
) -> web.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    return web.json_response(
        {"error": code, "message": message, **extra}, status=status, headers=headers
    )


def closed_port_url() -> str:
    """An http URL on which nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def fake_cluster(n: int = 3, leader: int | None = 0) -> AsyncIterator[list[FakeNode]]:
    """n fake nodes sharing one store; nodes[leader] says it is the leader."""
    store = Store()
    nodes = [FakeNode(f"n{i + 1}", store) for i in range(n)]
    for i, node in enumerate(nodes):
        if i == leader:
            node.role = "leader"
        node.leader = None if leader is None else nodes[leader].id
        await node.start()
    try:
        yield nodes
    finally:
        for node in nodes:
            await node.stop()


@contextlib.contextmanager
def fake_cluster_in_thread(n: int = 2) -> Iterator[list[FakeNode]]:
    """fake_cluster served by an event loop in a background thread (for blocking callers)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    cm = fake_cluster(n)
    try:
        yield asyncio.run_coroutine_threadsafe(cm.__aenter__(), loop).result(10)
    finally:
        asyncio.run_coroutine_threadsafe(cm.__aexit__(None, None, None), loop).result(10)
        asyncio.run_coroutine_threadsafe(_cancel_all(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


async def _cancel_all() -> None:
    """End handlers still parked in a "hang" so the loop closes cleanly."""
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
