"""The HTTP API of one node (DESIGN.md). Every node answers every request: a follower forwards
what needs the leader (writes, linearizable and lease reads, leadership transfer) and serves
the rest (stale reads, watch, status, events, metrics) itself.

Routes
  PUT    /v1/kv/{key}[?prev_revision=R]  body = raw value  -> 200 {"revision", "index"}
  GET    /v1/kv/{key}[?consistency=linearizable|lease|stale]
                                         -> 200 raw value, X-Raftkv-Revision: mod_revision
  DELETE /v1/kv/{key}[?prev_revision=R]  -> 200 {"revision", "index", "deleted"}
  POST   /v1/txn                         -> 200 (JSON in txn_json.py)
  POST   /v1/sessions                    -> 200 {"client_id", "index"}: a session, opened by
                                            the log entry at index (kv/sessions.py)
  GET    /v1/watch?prefix=P[&prefix=Q...][&from_revision=R]
                                         -> SSE: "event: put|delete", "id: revision", data
         {"watch", "type", "revision", "kv", "prev_kv"}; one watch per prefix on one stream
         (watch = its position, from 0), all from revision R (without it, only new events)
  GET    /v1/events                      -> SSE of node events (docs/events.md)
  GET    /v1/status
  GET|POST /v1/members, POST /v1/members/{id}/promote, DELETE /v1/members/{id}
                                         (members_api.py)
  GET    /v1/snapshot                    -> a backup of the store (snapshot_api.py)
  POST   /v1/leader/transfer {"to": id}  -> 200 {"leader", "term"} once the leader changed
  GET    /metrics, GET /healthz
  GET|POST /v1/debug/net                 (only with allow_fault_injection; else 404)

prev_revision=R: 0 = the key must be absent, R > 0 = its mod_revision must be R; else 409.
Sessions (exactly-once retries): X-Raftkv-Client (an id from POST /v1/sessions) + X-Raftkv-Seq
[+ X-Raftkv-Ack] on a write; a retry with the same seq is answered from the session
(X-Raftkv-Duplicate: true), applied once. A write naming a session the store does not hold
(never opened, or expired) answers 410 session_expired and is not applied.
Errors: see http_errors.py.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST

from raftkv.errors import BadRequest, NotLeader, Timeout, TooLarge
from raftkv.kv.commands import (
    Delete,
    OpenSession,
    Put,
    Session,
    TxnPut,
    encode_command,
    validate_session,
)
from raftkv.kv.history import Compacted
from raftkv.kv.limits import MAX_COMMAND_SIZE, validate_key, validate_prefix
from raftkv.kv.model import Event
from raftkv.kv.results import Result, ResultStatus
from raftkv.runtime import sse
from raftkv.runtime.addresses import AddressBook
from raftkv.runtime.admission import PeerPolicy
from raftkv.runtime.events import EventHub
from raftkv.runtime.faults import NetFaults
from raftkv.runtime.forward import (
    PROPOSE,
    READ_INDEX,
    TRANSFER,
    Caller,
    ForwardClient,
    ForwardServer,
    OpAnswer,
    add_internal_route,
    decode_transfer,
    encode_lease,
    encode_transfer,
    require_leader,
)
from raftkv.runtime.http_errors import (
    error_response,
    json_bytes,
    json_response,
    timeout_error,
)
from raftkv.runtime.http_types import Answered, Pending, Request, Response, Router
from raftkv.runtime.members_api import MembersApi
from raftkv.runtime.metrics import NodeMetrics
from raftkv.runtime.node import RaftRuntime
from raftkv.runtime.settings import NodeSettings
from raftkv.runtime.shell import wait_applied
from raftkv.runtime.snapshot_api import SnapshotApi
from raftkv.runtime.transport import PeerTransport
from raftkv.runtime.txn_json import decode_json, kv_json, parse_txn, txn_result_json

log = logging.getLogger("raftkv.http")

_results = msgspec.msgpack.Decoder(Result)
_T = TypeVar("_T")
Render = Callable[[Result, int], dict[str, Any]]
CONSISTENCY = ("linearizable", "lease", "stale")
MAX_WATCHES = 64  # watches (prefixes) on one stream
MAX_BODY = 2 * MAX_COMMAND_SIZE  # any request body (a PUT's value: max_value_size)


class HttpApi:
    def __init__(
        self,
        settings: NodeSettings,
        node: RaftRuntime,
        transport: PeerTransport,
        faults: NetFaults,
        hub: EventHub,
        metrics: NodeMetrics,
        forwarder: ForwardClient,
        *,
        book: AddressBook | None = None,
    ) -> None:
        self._settings = settings
        # Where the members are (it follows membership changes); --peers when not given.
        self._book = book or AddressBook(settings.node_id, settings.peers)
        self._node = node
        self._transport = transport
        self._faults = faults
        self._hub = hub
        self._metrics = metrics
        self._forwarder = forwarder
        self._closing = asyncio.Event()
        self._watches: set[asyncio.Event] = set()  # wake-ups of the open watch streams
        self._id = settings.node_id
        self._timeout = settings.request_timeout_s
        # What a Pending write or read answers once it is late (made once, not per request).
        self._write_late = functools.partial(timeout_error, self._timeout, write=True)
        self._read_late = functools.partial(timeout_error, self._timeout, write=False)
        # Who is a peer, for the connection budgets (admission.py) and forwarded requests.
        self.peers = PeerPolicy.of(settings, lambda p: p != self._id and p in self._book.peers())
        self._members = MembersApi(node, self._book, self._forward, self._timed_write)
        # What a follower may ask of this node while it leads (forward.py).
        self.forwarded = ForwardServer(
            node,
            settings.cluster_id,
            settings.request_timeout_s,
            {**self._members.ops(), TRANSFER: self._transfer_op},
        )

    @property
    def node_metrics(self) -> NodeMetrics:
        return self._metrics

    def router(self) -> Router:
        r = Router(MAX_BODY)
        value_limit = self._settings.max_value_size
        r.add("PUT", "/v1/kv/{key:.+}", self.put_kv, max_body=value_limit, what="value")
        r.add("GET", "/v1/kv/{key:.+}", self.get_kv)
        r.add("DELETE", "/v1/kv/{key:.+}", self.delete_kv)
        r.add("POST", "/v1/txn", self.txn)
        r.add("POST", "/v1/sessions", self.open_session)
        r.add("GET", "/v1/watch", self.watch)
        r.add("GET", "/v1/events", self.events)
        r.add("GET", "/v1/status", self.status)
        self._members.add_routes(r)
        SnapshotApi(self._node, self._book, self._linearizable).add_routes(r)
        r.add("POST", "/v1/leader/transfer", self.transfer)
        add_internal_route(r, self.forwarded, self.peers)
        r.add("GET", "/metrics", self.metrics)
        r.add("GET", "/healthz", self.healthz)
        if self._settings.allow_fault_injection:
            r.add("GET", "/v1/debug/net", self.get_net)
            r.add("POST", "/v1/debug/net", self.post_net)
        return r

    def close_streams(self) -> None:
        """End every SSE stream (watch, events) so shutdown does not wait for them."""
        self._closing.set()
        self._hub.close()
        for wake in self._watches:
            wake.set()

    # --- key-value ----------------------------------------------------------------------

    def put_kv(self, request: Request) -> Answered:
        key = self._check_key(request.params["key"])
        self._check_value(request.body)
        prev = _int_param(request, "prev_revision", minimum=0)
        data = encode_command(Put(key, request.body, prev), _session(request))
        return self._write(request, data, revision_json)

    def delete_kv(self, request: Request) -> Answered:
        key = self._check_key(request.params["key"])
        prev = _int_param(request, "prev_revision", minimum=0)
        data = encode_command(Delete(key, prev), _session(request))
        return self._write(request, data, deleted_json)

    def get_kv(self, request: Request) -> Answered:
        key = self._check_key(request.params["key"])
        consistency = request.arg("consistency", "linearizable")
        if consistency not in CONSISTENCY:
            raise BadRequest(f"consistency must be one of {', '.join(CONSISTENCY)}")
        if consistency == "stale":
            return self._value(key)
        lease = consistency == "lease"
        node = self._node
        if not node.is_leader:
            return self._read_then(request, lease, key)
        pending = Pending(
            functools.partial(self._value_read, key),
            timeout=self._timeout,
            on_timeout=self._read_late,
            otherwise=functools.partial(self._read_elsewhere, request, lease, key),
        )
        node.submit_read(pending, lease=lease)
        return pending

    def _value_read(self, key: str, read_index: int) -> Response:
        return self._value(key)  # applied >= read_index: the barrier held

    def _read_elsewhere(
        self, request: Request, lease: bool, key: str, error: BaseException
    ) -> Coroutine[Any, Any, Response] | None:
        """Lost leadership before the read: ask the new leader."""
        return self._unless_no_leader(error, self._read_then(request, lease, key))

    async def _read_then(self, request: Request, lease: bool, key: str) -> Response:
        await self._read_at_leader(request, lease)
        return self._value(key)

    def _value(self, key: str) -> Response:
        kv = self._node.kv.get(key)
        if kv is None:
            return error_response(404, "not_found", f"key {key!r} does not exist")
        return Response(
            kv.value, 200, "application/octet-stream", {"X-Raftkv-Revision": str(kv.mod_revision)}
        )

    async def txn(self, request: Request) -> Response:
        txn = parse_txn(decode_json(request.body))
        for op in (*txn.success, *txn.failure):
            if isinstance(op, TxnPut):
                self._check_key(op.key)
                self._check_value(op.value)
            elif not op.prefix:  # a prefix may be empty: every key
                self._check_key(op.key)
        for c in txn.compares:
            self._check_key(c.key)
        data = encode_command(txn, _session(request))
        return await _answer(self._write(request, data, txn_result_json))

    def open_session(self, request: Request) -> Answered:
        """A new client session, opened through the log. The id is the entry's index and a
        random nonce (kv/sessions.py: unique, and not guessable)."""
        if request.body:
            raise BadRequest("POST /v1/sessions takes no body")
        data = encode_command(OpenSession(secrets.token_hex(8)))
        return self._write(request, data, session_json)

    # --- watch and events (SSE) ----------------------------------------------------------

    async def watch(self, request: Request) -> Response:
        prefixes = request.query.get("prefix", [""])
        if len(prefixes) > MAX_WATCHES:
            raise BadRequest(f"at most {MAX_WATCHES} watches (prefix=) on one stream")
        for prefix in prefixes:
            validate_prefix(prefix)
        if len(request.query.get("from_revision", [])) > 1:
            raise BadRequest("from_revision is given once, for every watch of the stream")
        kv = self._node.kv
        start = _int_param(request, "from_revision", minimum=1)
        next_rev = kv.revision + 1 if start is None else start
        if next_rev < kv.first_event_revision:  # 410 before the stream starts
            raise Compacted(next_rev, kv.first_event_revision)
        stream = sse.open_stream(request, self._settings.security.idle_timeout_s)
        with self._node.watcher() as wake:
            self._watches.add(wake)
            try:
                await self._stream_watch(stream, wake, prefixes, next_rev)
            except (ConnectionError, OSError):
                pass  # the client went away
            finally:
                self._watches.discard(wake)
        return stream.resp

    async def _stream_watch(
        self, stream: sse.Stream, wake: asyncio.Event, prefixes: list[str], next_rev: int
    ) -> None:
        """Send every event from next_rev on, once per watch (prefix) it matches, in revision
        order, then watch order. Invariant: all events < next_rev were sent."""
        kv = self._node.kv
        common = _common_prefix(prefixes)  # narrows the history scan
        while not self._closing.is_set() and self._node.running:
            wake.clear()  # before reading, so no change can slip between read and wait
            seen = kv.revision  # read together with the events (no await in between)
            try:
                events = kv.events_since(next_rev, common)
            except Compacted as e:  # the history moved on while we were behind
                err = {"error": "compacted", "message": str(e)}
                await stream.send(json.dumps(err), event="error")
                return
            for ev in events:
                for watch, prefix in enumerate(prefixes):
                    if ev.kv.key.startswith(prefix):
                        data = _event_json(ev, watch)
                        await stream.send(data, event=ev.type.value, id=ev.revision)
            next_rev = max(next_rev, seen + 1)
            try:
                await asyncio.wait_for(wake.wait(), sse.KEEPALIVE_S)
            except TimeoutError:
                await stream.keepalive()

    async def events(self, request: Request) -> Response:
        stream = sse.open_stream(request, self._settings.security.idle_timeout_s)
        try:
            with self._hub.subscribe() as sub:
                await stream.send(self._hub.encode("state", self._node.state_fields()))
                while not self._closing.is_set():
                    try:
                        item = await asyncio.wait_for(sub.queue.get(), sse.KEEPALIVE_S)
                    except TimeoutError:
                        await stream.keepalive()
                        continue
                    chunk: list[str] = []
                    while item is not None:
                        chunk.append(f"data: {item}\n\n")
                        if sub.queue.empty():
                            break
                        item = sub.queue.get_nowait()
                    if chunk:
                        await stream.write("".join(chunk).encode())
                    if item is None:
                        break
        except (ConnectionError, OSError):
            pass
        return stream.resp

    # --- cluster ------------------------------------------------------------------------

    def status(self, request: Request) -> Response:
        return json_response(self.status_json())

    def status_json(self) -> dict[str, Any]:
        node = self._node
        st = node.raft.status()
        members = []
        membership = node.raft.membership
        for mid in membership.members:
            link = None  # this node's outbound peer link to mid (none to itself)
            if mid == st.id:
                role = st.role.value if mid in membership.voters else "learner"
                match: int | None = node.raft.stable_index
                reachable = True
                recovering = st.lost_from > 0
            else:
                role = "leader" if mid == st.leader else "follower"
                if mid not in membership.voters:
                    role = "learner"
                peer = st.peers.get(mid)
                match = peer.match if peer is not None else None
                recovering = peer is not None and peer.recovering
                reachable = self._reachable(mid)
                state = self._transport.link_state(mid)
                link = None if state is None else state.as_json()
            members.append(
                {
                    "id": mid,
                    "role": role,
                    "match_index": match,
                    "reachable": reachable,
                    "link": link,
                    "recovering": recovering,  # lost synced data; not caught up yet
                }
            )
        return {
            "id": st.id,
            "role": st.role.value,
            "term": st.term,
            "leader": st.leader,
            "commit_index": st.commit_index,
            "applied_index": node.applied_index,
            "last_index": st.last_index,
            "members": members,
            "lost_from": st.lost_from,  # > 0: recovering lost entries from there on
        }

    async def _forward(self, request: Request, op: str, body: bytes, write: bool) -> OpAnswer:
        """op at the leader for this request's client (forward.py); NotLeader when no
        leader is known. The answer to the client will name the leader (http_server.py)."""
        node = self._node
        leader = node.leader
        if leader is None or leader == self._id:
            raise NotLeader(
                f"no leader is known right now ({self._id} is a {node.role.value}); retry", None
            )
        request.leader = leader
        caller = Caller(request.headers.get("authorization"), request.identity)
        timeout = self._timeout + 1.0  # the leader's own timeout comes first
        return await self._forwarder.call(leader, op, body, timeout, write=write, caller=caller)

    async def _timed_write(self, aw: Awaitable[_T]) -> _T:
        return await self._timed(aw, write=True)

    async def _linearizable(self, request: Request) -> None:
        """Return once a local read is linearizable (here, or at a follower)."""
        node = self._node
        if node.is_leader:
            try:
                await self._timed(node.read_barrier(lease=False), write=False)
            except NotLeader:
                if node.leader is None:
                    raise
            else:
                return
        await self._read_at_leader(request, lease=False)

    async def transfer(self, request: Request) -> Response:
        body = request.body
        doc = decode_json(body) if body.strip() else {}
        if not isinstance(doc, dict) or set(doc) - {"to"}:
            raise BadRequest('expected {"to": "<node id>"} or an empty body')
        target = doc.get("to")
        if target is not None and target not in self._node.raft.membership.voters:
            raise BadRequest(f"{target!r} is not a voter")
        if self._node.is_leader:
            return json_response(await self.transfer_here(target))
        answer = await self._forward(request, TRANSFER, encode_transfer(target), write=False)
        return raw_json(answer.result)

    async def _transfer_op(self, body: bytes, peer: str | None) -> tuple[int, bytes]:
        require_leader(self._node)
        doc = await self.transfer_here(decode_transfer(body))
        return 0, json_bytes(doc)

    async def transfer_here(self, target: str | None) -> dict[str, Any]:
        """Hand this leader's leadership to target (None: the best reachable follower)."""
        node = self._node
        require_leader(node)
        if target is None:
            target = node.best_transfer_target(self._reachable)
            if target is None:
                raise NotLeader("no reachable follower can take over leadership", node.id)
        if target == node.id:
            return {"leader": node.id, "term": node.term}
        timeout = min(self._timeout, 4 * self._settings.election_timeout_seconds)
        try:
            leader = await asyncio.wait_for(node.transfer(target), timeout)
        except TimeoutError:
            raise Timeout(
                f"leadership did not move to {target} within {timeout:g}s "
                f"(current leader: {node.leader or 'unknown'})"
            ) from None
        return {"leader": leader, "term": node.term}

    # --- operations ---------------------------------------------------------------------

    def metrics(self, request: Request) -> Response:
        return Response(self._metrics.exposition(), 200, CONTENT_TYPE_LATEST)

    def healthz(self, request: Request) -> Response:
        node = self._node
        leader, applied, commit = node.leader, node.applied_index, node.commit_index
        if not node.running:
            problem = "the node is stopping or has failed"
        elif leader is None:
            problem = "no leader is known"
        elif applied != commit:
            problem = f"applied index {applied} is behind commit index {commit}"
        else:
            return json_response(
                {"ok": True, "leader": leader, "applied_index": applied, "commit_index": commit}
            )
        return error_response(503, "unhealthy", problem)

    def get_net(self, request: Request) -> Response:
        return json_response(self._faults.as_json())

    def post_net(self, request: Request) -> Response:
        doc = decode_json(request.body)
        peers = frozenset(p for p in self._book.peers() if p != self._id)
        self._faults.apply(doc, peers)
        log.warning("%s: network faults now %s", self._id, self._faults.as_json())
        return json_response(self._faults.as_json())

    # --- helpers ------------------------------------------------------------------------

    def _reachable(self, peer: str) -> bool:
        return self._transport.connected(peer) and not self._faults.blocks(peer)

    def _write(self, request: Request, data: bytes, render: Render) -> Answered:
        """Replicate the encoded command: here when this node leads, else at the leader."""
        node = self._node
        if not node.is_leader:
            return self._write_at_leader(request, data, render)
        # (partials, not lambdas: they are made for every write)
        pending = Pending(
            functools.partial(_write_answer, render),
            timeout=self._timeout,
            on_timeout=self._write_late,
            otherwise=functools.partial(self._write_elsewhere, request, data, render),
        )
        node.submit(data, pending)
        return pending

    def _write_elsewhere(
        self, request: Request, data: bytes, render: Render, error: BaseException
    ) -> Coroutine[Any, Any, Response] | None:
        """Lost leadership before proposing: nothing was appended, ask the new leader."""
        return self._unless_no_leader(error, self._write_at_leader(request, data, render))

    async def _write_at_leader(self, request: Request, data: bytes, render: Render) -> Response:
        answer = await self._forward(request, PROPOSE, data, write=True)
        return result_response(_results.decode(answer.result), answer.index, render)

    def _unless_no_leader(
        self, error: BaseException, retry: Coroutine[Any, Any, Response]
    ) -> Coroutine[Any, Any, Response] | None:
        """retry when error is NotLeader and another leader is known, else None (answer the
        error)."""
        if isinstance(error, NotLeader) and self._node.leader not in (None, self._id):
            return retry
        retry.close()
        return None

    async def _read_at_leader(self, request: Request, lease: bool) -> None:
        """This follower applies the leader's read index: a local read is then linearizable
        (lease: within the leader's lease)."""
        answer = await self._forward(request, READ_INDEX, encode_lease(lease), write=False)
        deadline = asyncio.get_running_loop().time() + self._timeout
        try:
            await wait_applied(self._node, answer.index, deadline)
        except Timeout:
            raise Timeout(
                f"{self._id} did not apply the leader's read index {answer.index} within "
                f"{self._timeout:g}s; the read had no effect, retry"
            ) from None

    async def _timed(self, aw: Awaitable[_T], *, write: bool) -> _T:
        try:
            async with asyncio.timeout(self._timeout):
                return await aw
        except TimeoutError:
            raise timeout_error(self._timeout, write=write) from None

    def _check_key(self, key: str) -> str:
        """key, if it is acceptable."""
        size = validate_key(key)
        if size > self._settings.max_key_size:
            raise TooLarge(f"key is {size} bytes, the limit is {self._settings.max_key_size}")
        return key

    def _check_value(self, value: bytes) -> None:
        if len(value) > self._settings.max_value_size:
            raise TooLarge(
                f"value is {len(value)} bytes, the limit is {self._settings.max_value_size}"
            )


async def _answer(answered: Answered) -> Response:
    """What a handler that awaits gets from a helper answering in any of the three ways."""
    if isinstance(answered, Response):
        return answered
    if isinstance(answered, Pending):
        return await _wait(answered)
    return await answered


async def _wait(pending: Pending) -> Response:
    """A Pending, awaited (in a handler that is a coroutine anyway)."""
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def resolved(_: Pending, result: Any, error: BaseException | None) -> None:
        if fut.done():
            return
        if error is None:
            fut.set_result(result)
        else:
            fut.set_exception(error)

    pending.listen(resolved)
    try:
        async with asyncio.timeout(pending.timeout):
            result = await fut
    except TimeoutError:
        raise pending.on_timeout() from None
    except Exception as e:
        retry = pending.otherwise(e)
        if retry is None:
            raise
        return await retry
    finally:
        pending.cancel()
    return pending.on_result(result)


def _session(request: Request) -> Session | None:
    h = request.headers
    return session_from(h.get("x-raftkv-client"), h.get("x-raftkv-seq"), h.get("x-raftkv-ack"))


def session_from(client: str | None, seq: str | None, ack: str | None) -> Session | None:
    """The write's client session from its X-Raftkv-Client / -Seq / -Ack headers, if any."""
    if client is None and seq is None:
        return None
    if client is None or seq is None:
        raise BadRequest("X-Raftkv-Client and X-Raftkv-Seq must be given together")
    session = Session(
        client,
        _parse_int(seq, "X-Raftkv-Seq"),
        _parse_int(ack if ack is not None else "0", "X-Raftkv-Ack"),
    )
    validate_session(session)
    return session


def raw_json(body: bytes) -> Response:
    """A JSON document the leader rendered (forwarded requests)."""
    return Response(body)


def _write_answer(render: Render, done: tuple[Result, int]) -> Response:
    return result_response(done[0], done[1], render)


def result_response(result: Result, index: int, render: Render) -> Response:
    if render is revision_json and result.status is ResultStatus.OK and not result.duplicate:
        return Response(b'{"revision":%d,"index":%d}' % (result.revision, index))  # (hot)
    headers = {"X-Raftkv-Duplicate": "true"} if result.duplicate else None
    match result.status:
        case ResultStatus.OK:
            return json_response(render(result, index), headers=headers)
        case ResultStatus.CONFLICT:
            return error_response(
                409,
                "conflict",
                result.error,
                headers=headers,
                mod_revision=result.prev_revision,
                revision=result.revision,
            )
        case ResultStatus.TOO_LARGE:
            return error_response(413, "too_large", result.error)
        case ResultStatus.SESSION_EXPIRED:
            return error_response(410, "session_expired", result.error)
        case ResultStatus.INVALID:
            return error_response(400, "bad_request", result.error)
    raise AssertionError(f"unhandled result status {result.status}")


def revision_json(result: Result, index: int) -> dict[str, Any]:
    return {"revision": result.revision, "index": index}


def deleted_json(result: Result, index: int) -> dict[str, Any]:
    return {"revision": result.revision, "index": index, "deleted": result.deleted}


def session_json(result: Result, index: int) -> dict[str, Any]:
    return {"client_id": result.client_id, "index": index}


def _event_json(ev: Event, watch: int) -> str:
    doc = {
        "watch": watch,
        "type": ev.type.value,
        "revision": ev.revision,
        "kv": kv_json(ev.kv),
        "prev_kv": None if ev.prev is None else kv_json(ev.prev),
    }
    return json.dumps(doc, separators=(",", ":"))


def _common_prefix(texts: list[str]) -> str:
    low, high = min(texts), max(texts)  # every text lies between them, so shares their prefix
    n = 0
    while n < len(low) and low[n] == high[n]:
        n += 1
    return low[:n]


def _int_param(request: Request, name: str, *, minimum: int) -> int | None:
    text = request.arg(name)
    if text is None:
        return None
    value = _parse_int(text, name)
    if value < minimum:
        raise BadRequest(f"{name} must be >= {minimum}, got {value}")
    return value


def _parse_int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {text!r}") from None
