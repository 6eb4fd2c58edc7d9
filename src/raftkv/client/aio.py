"""The asyncio client of raftkv.

    async with AsyncClient("http://127.0.0.1:8001,http://127.0.0.1:8002") as kv:
        await kv.put("x", "99")
        print((await kv.get("x")).text)

Every write carries a client session (X-Raftkv-Client / X-Raftkv-Seq / X-Raftkv-Ack; the
session is opened with POST /v1/sessions before the first write), so the client retries it
across endpoints without ever applying it twice. A write whose outcome stays unknown until the
deadline raises raftkv.errors.Timeout, saying it may have committed; SessionExpired (a Timeout)
when the session expired while an earlier attempt's outcome was unknown.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import aiohttp
from yarl import URL

from raftkv.client.credentials import Credentials
from raftkv.client.endpoints import resolve_endpoints
from raftkv.client.errors import (
    NotFound,
    NotSupported,
    ServerError,
    Unavailable,
    error_from_response,
    is_raftkv_error,
    wrong_endpoint,
)
from raftkv.client.router import EndpointRouter, HttpAnswer, RetryPolicy, connect_error, no_answer
from raftkv.client.sse import SseParser
from raftkv.client.types import (
    GetResult,
    ServerStatus,
    TxnResult,
    WatchEvent,
    WriteResult,
    decode_value,
    encode_value,
    key_value,
)
from raftkv.errors import BadRequest, RaftkvError

Consistency = Literal["linearizable", "lease", "stale"]
CONSISTENCIES: tuple[Consistency, ...] = ("linearizable", "lease", "stale")
Value = bytes | str

REVISION_HEADER = "X-Raftkv-Revision"
WATCH_READ_TIMEOUT_S = 60.0  # the server sends a keep-alive every 15 s
WATCH_MAX_FAILURES = 10  # consecutive failed (re)connections before a watch gives up


@dataclass(frozen=True, slots=True)
class CasResult:
    succeeded: bool
    revision: int  # the store revision after the txn
    current: bytes | None = None  # on failure: the key's value now (None: absent)


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    voter: bool
    raft_address: str
    http_url: str
    match_index: int | None = None  # as the leader sees it
    caught_up: bool | None = None  # a learner that may be promoted (None: unknown)


class AsyncClient:
    def __init__(
        self,
        endpoints: str | Iterable[str] | None = None,
        *,
        timeout: float = 10.0,
        policy: RetryPolicy | None = None,
        http_session: aiohttp.ClientSession | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        """endpoints: base URLs (a list or a comma-separated string); default $RAFTKV_ENDPOINTS.
        timeout: how long one operation may take, every retry included. http_session: share
        one aiohttp session (connection pool) between clients; it is not closed by close()
        (its connector must trust the servers' CA for https). credentials: a bearer token and
        TLS files; unset fields come from $RAFTKV_TOKEN, $RAFTKV_CACERT, ... (credentials.py)."""
        policy = policy or RetryPolicy(timeout=timeout)
        creds = (credentials or Credentials()).merged(Credentials.from_env())
        self._router = EndpointRouter(resolve_endpoints(endpoints), policy, http_session, creds)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._router.close()

    @property
    def endpoints(self) -> list[str]:
        return list(self._router.endpoints)

    @property
    def leader_endpoint(self) -> str | None:
        """The endpoint currently believed to be the leader (None: unknown)."""
        return self._router.leader

    @property
    def client_id(self) -> str | None:
        """The id of this client's session (opened through the log by its first write; None
        before). It changes when the server forgot the session and a new one was opened."""
        session = self._router.sessions.session
        return None if session is None else session.client_id

    async def discover_leader(self, timeout: float = 1.0) -> str | None:
        """Ask every endpoint for its status now; the leader's endpoint, if one answered."""
        await self._router.discover(timeout)
        return self._router.leader

    # --- key-value ----------------------------------------------------------------------

    async def put(
        self,
        key: str,
        value: Value,
        *,
        prev_revision: int | None = None,
        timeout: float | None = None,
    ) -> WriteResult:
        """Set key. prev_revision: 0 = only if absent, R = only if its mod_revision is R
        (else raftkv.client.Conflict)."""
        params = None if prev_revision is None else {"prev_revision": str(prev_revision)}
        answer = await self._router.request(
            "PUT",
            _kv_path(key),
            what=f"put {key!r}",
            params=params,
            body=_bytes(value),
            write=True,
            timeout=timeout,
        )
        return _write_result(answer)

    async def get(
        self, key: str, *, consistency: Consistency = "linearizable", timeout: float | None = None
    ) -> GetResult | None:
        """The key's value and mod_revision, or None when absent."""
        if consistency not in CONSISTENCIES:
            raise BadRequest(f"consistency must be one of {', '.join(CONSISTENCIES)}")
        try:
            answer = await self._router.request(
                "GET",
                _kv_path(key),
                what=f"get {key!r}",
                params={"consistency": consistency},
                timeout=timeout,
            )
        except NotFound:
            return None
        revision = answer.headers.get(REVISION_HEADER)
        if revision is None:  # every raftkv node sends it with a value
            raise answer.not_raftkv(f"get {key!r}", f"the {REVISION_HEADER} header")
        return GetResult(key, answer.body, _int(revision))

    async def delete(
        self, key: str, *, prev_revision: int | None = None, timeout: float | None = None
    ) -> WriteResult:
        """Delete key (absent is not an error: deleted == 0)."""
        params = None if prev_revision is None else {"prev_revision": str(prev_revision)}
        answer = await self._router.request(
            "DELETE",
            _kv_path(key),
            what=f"delete {key!r}",
            params=params,
            write=True,
            timeout=timeout,
        )
        return _write_result(answer)

    async def cas(
        self, key: str, expected: Value | None, new: Value, *, timeout: float | None = None
    ) -> CasResult:
        """Set key to new iff its value is expected (None: iff the key is absent), atomically."""
        compare: dict[str, Any] = {"key": key}
        if expected is None:
            compare.update(target="version", op="=", value=0)
        else:
            compare.update(target="value", op="=", **encode_value(_bytes(expected)))
        result = await self.txn(
            compare=[compare],
            success=[{"put": {"key": key, **encode_value(_bytes(new))}}],
            failure=[{"get": {"key": key}}],
            timeout=timeout,
        )
        current = None
        if not result.succeeded:
            kvs = result.responses[0].get("get", {}).get("kvs", []) if result.responses else []
            current = key_value(kvs[0]).value if kvs else None
        return CasResult(result.succeeded, result.revision, current)

    async def txn(
        self,
        compare: Sequence[Mapping[str, Any]] = (),
        success: Sequence[Mapping[str, Any]] = (),
        failure: Sequence[Mapping[str, Any]] = (),
        *,
        timeout: float | None = None,
    ) -> TxnResult:
        """An etcd-style transaction in the server's JSON form (docs/http.md#transactions)."""
        body = json.dumps(
            {"compare": list(compare), "success": list(success), "failure": list(failure)}
        ).encode()
        answer = await self._router.request(
            "POST", "/v1/txn", what="txn", body=body, write=True, timeout=timeout
        )
        doc = _object(answer)
        return TxnResult(
            succeeded=bool(doc.get("succeeded", False)),
            revision=int(doc.get("revision", 0)),
            index=int(doc.get("index", 0)),
            responses=tuple(doc.get("responses", ())),
            duplicate=_duplicate(answer),
        )

    # --- watch --------------------------------------------------------------------------

    async def watch(
        self, prefix: str | Sequence[str] = "", *, from_revision: int | None = None
    ) -> AsyncGenerator[WatchEvent, None]:
        """Every change to keys under prefix, from from_revision (default: only new ones).

        Several prefixes are several watches on one stream (one connection): an event comes
        once per watch it matches, tagged with the position of that watch's prefix
        (WatchEvent.watch), in revision order.

        Reconnects (to another endpoint if need be) after a lost connection, resuming after
        the last event seen, so no event is skipped or repeated once one has been seen.
        """
        prefixes = [prefix] if isinstance(prefix, str) else list(prefix)
        if not prefixes:
            raise ValueError("watch needs at least one prefix")
        what = repr(prefixes[0]) if len(prefixes) == 1 else repr(prefixes)
        router = self._router
        cursor = from_revision  # the revision to resume from after a reconnection
        seen = 0  # events of revision `cursor` already yielded (a txn's events share one)
        failures = 0
        while True:
            endpoint = router.leader or router.endpoints[failures % len(router.endpoints)]
            # Every watch restarts from one cursor: the server sends the events of a revision
            # in the same order each time, so skipping the `seen` first ones is exact.
            params = [("prefix", p) for p in prefixes]
            if cursor is not None:
                params.append(("from_revision", str(cursor)))
            url = URL(endpoint + "/v1/watch", encoded=True).update_query(params)
            timeout = aiohttp.ClientTimeout(
                total=None,
                sock_connect=router.policy.attempt_timeout,
                sock_read=WATCH_READ_TIMEOUT_S,
            )
            skip = seen  # replayed events of revision `cursor` that were yielded already
            try:
                async with router.http().get(
                    url, timeout=timeout, headers=router.auth_headers
                ) as resp:
                    if resp.status != 200:
                        body = await resp.read()
                        if not is_raftkv_error(body):
                            ctype = resp.headers.get("Content-Type", "")
                            request = "GET /v1/watch"
                            raise wrong_endpoint(endpoint, request, resp.status, ctype, body)
                        raise error_from_response(resp.status, body, endpoint)
                    failures = 0
                    parser = SseParser()
                    async for raw in resp.content:
                        sse = parser.feed_line(raw.decode("utf-8", "replace").rstrip("\r\n"))
                        if sse is None:
                            continue
                        if sse.event == "error":
                            raise error_from_response(410, sse.data.encode(), endpoint)
                        event = _watch_event(sse.data)
                        if cursor is not None and event.revision < cursor:
                            continue
                        if event.revision == cursor:
                            if skip > 0:
                                skip -= 1
                                continue
                            seen += 1
                        else:
                            cursor, seen = event.revision, 1
                        yield event
                failures += 1  # the server ended the stream (shutting down?): go elsewhere
            except (aiohttp.ClientError, TimeoutError) as e:
                failures += 1
                if router.leader == endpoint:
                    router.leader = None
                if failures >= WATCH_MAX_FAILURES:
                    raise Unavailable(f"watch on {what} lost its connection: {e}") from None
            await asyncio.sleep(min(1.0, 0.05 * 2.0**failures))

    # --- cluster ------------------------------------------------------------------------

    async def status(self, endpoint: str | None = None, *, timeout: float = 2.0) -> ServerStatus:
        """GET /v1/status: of `endpoint` if given (no retries), else of the leader."""
        if endpoint is not None:
            return await self._status_of(endpoint, timeout)
        answer = await self._router.request("GET", "/v1/status", what="status")
        return ServerStatus.from_json(answer.json())

    async def cluster_status(
        self, *, timeout: float = 2.0
    ) -> dict[str, ServerStatus | RaftkvError]:
        """The status of every endpoint (or why it could not be had), in endpoint order."""
        eps = self._router.endpoints
        results = await asyncio.gather(
            *(self._status_of(e, timeout) for e in eps), return_exceptions=True
        )
        out: dict[str, ServerStatus | RaftkvError] = {}
        for endpoint, result in zip(eps, results, strict=True):
            if isinstance(result, ServerStatus | RaftkvError):
                out[endpoint] = result
            elif isinstance(result, Exception):
                out[endpoint] = Unavailable(str(result) or type(result).__name__)
            else:
                raise result
        return out

    async def members(self) -> list[Member]:
        answer = await self._router.request("GET", "/v1/members", what="member list")
        doc = _object(answer)
        try:
            return [
                Member(
                    str(m["id"]),
                    bool(m.get("voter", True)),
                    str(m.get("raft_address", "")),
                    str(m.get("http_url", "")),
                    m.get("match_index") if isinstance(m.get("match_index"), int) else None,
                    m.get("caught_up") if isinstance(m.get("caught_up"), bool) else None,
                )
                for m in doc.get("members", [])
            ]
        except (KeyError, TypeError) as e:
            raise ServerError(f"malformed member list: {e}") from None

    async def add_member(self, node_id: str, raft_address: str, http_url: str) -> Any:
        body = {"id": node_id, "raft_address": raft_address, "http_url": http_url}
        return await self._admin("POST", "/v1/members", f"add member {node_id}", body)

    async def remove_member(self, node_id: str) -> Any:
        path = "/v1/members/" + quote(node_id, safe="")
        return await self._admin("DELETE", path, f"remove member {node_id}", None)

    async def promote_member(self, node_id: str) -> Any:
        path = "/v1/members/" + quote(node_id, safe="") + "/promote"
        return await self._admin("POST", path, f"promote member {node_id}", None)

    async def snapshot(self) -> bytes:
        """A linearizable backup of the whole store: a snapshot file's bytes (GET /v1/snapshot)."""
        answer = await self._router.request("GET", "/v1/snapshot", what="snapshot")
        return bytes(answer.body)

    async def transfer_leader(self, to: str | None = None, *, timeout: float | None = None) -> str:
        """Move leadership to node `to` (None: the most caught-up follower); the new leader."""
        body = {} if to is None else {"to": to}
        doc = await self._admin("POST", "/v1/leader/transfer", "leader transfer", body, timeout)
        self._router.leader = None  # the leader moved: rediscover
        return str(doc.get("leader", "")) if isinstance(doc, dict) else ""

    async def set_faults(self, endpoint: str, faults: Mapping[str, Any]) -> Any:
        """POST /v1/debug/net on one node (started with --allow-fault-injection)."""
        answer = await self._router.send(
            endpoint.rstrip("/"),
            "POST",
            "/v1/debug/net",
            body=json.dumps(dict(faults)).encode(),
            timeout=self._router.policy.attempt_timeout,
        )
        if answer.status == 404:
            raise NotFound(
                f"{endpoint} has no fault injection (start the node with --allow-fault-injection)"
            )
        if answer.status != 200:
            raise error_from_response(answer.status, answer.body, endpoint)
        return answer.json()

    # --- helpers ------------------------------------------------------------------------

    async def _status_of(self, endpoint: str, timeout: float) -> ServerStatus:
        endpoint = endpoint.rstrip("/")
        try:
            return await self._router.status_of(endpoint, timeout)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as e:
            raise Unavailable(connect_error(endpoint, e)) from None
        except (aiohttp.ClientError, TimeoutError) as e:
            raise Unavailable(no_answer(endpoint, e)) from None

    async def _admin(
        self,
        method: str,
        path: str,
        what: str,
        body: Mapping[str, Any] | None,
        timeout: float | None = None,
    ) -> Any:
        """A cluster change: not covered by sessions, so never retried once it may have run."""
        data = None if body is None else json.dumps(dict(body)).encode()
        try:
            answer = await self._router.request(
                method, path, what=what, body=data, idempotent=False, timeout=timeout
            )
        except NotFound as e:
            raise NotSupported(f"{what}: the server has no such operation ({e})") from None
        except NotSupported as e:
            raise NotSupported(f"{what}: not supported by the server: {e}") from None
        return answer.json() if answer.body else None


def _kv_path(key: str) -> str:
    if not key:
        raise BadRequest("key must not be empty")
    return "/v1/kv/" + quote(key, safe="")


def _bytes(value: Value) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


def _duplicate(answer: HttpAnswer) -> bool:
    return answer.headers.get("X-Raftkv-Duplicate", "").lower() == "true"


def _object(answer: HttpAnswer) -> dict[str, Any]:
    doc = answer.json()
    if not isinstance(doc, dict):
        raise ServerError(f"{answer.endpoint} sent {str(doc)[:100]} where an object was expected")
    return doc


def _write_result(answer: HttpAnswer) -> WriteResult:
    doc = _object(answer)
    return WriteResult(
        revision=int(doc.get("revision", 0)),
        index=int(doc.get("index", 0)),
        duplicate=_duplicate(answer),
        deleted=int(doc.get("deleted", 0)),
    )


def _watch_event(data: str) -> WatchEvent:
    try:
        doc = json.loads(data)
        kv = doc["kv"]
        prev = doc.get("prev_kv")
        return WatchEvent(
            type=str(doc["type"]),
            key=str(kv["key"]),
            value=decode_value(kv),
            revision=int(doc["revision"]),
            prev_value=None if prev is None else decode_value(prev),
            watch=int(doc.get("watch", 0)),
            raw=doc,
        )
    except (ValueError, KeyError, TypeError) as e:
        raise ServerError(f"malformed watch event ({e}): {data[:100]}") from None
