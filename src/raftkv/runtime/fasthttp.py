"""A fast path in front of aiohttp for the two hot routes, on the leader.

Every HTTP connection starts with a FastProtocol. For each request it parses the head itself
and serves it directly when it is a plain, well-formed

    PUT /v1/kv/{key}                                   (optional X-Raftkv-Client/-Seq/-Ack)
    GET /v1/kv/{key}[?consistency=linearizable|lease|stale]

arriving at the leader; the answer is byte for byte the one HttpApi gives (same status, JSON
body, X-Raftkv-* headers), computed with the same helpers. Anything else (another route or
method, a query it does not know, percent-encoding, chunked bodies, Expect, HTTP/1.0, a key or
value over a limit, a follower that must forward, a leader that lost leadership before the
proposal was appended, a connection that admission.py does not admit) is handed, untouched,
to aiohttp's RequestHandler, which then owns the connection for good: the transport is
switched over and the bytes received so far are replayed to it. So every error path and
every other feature stays aiohttp's.

Why: aiohttp's per-request machinery (Request objects, routing, middleware, a task per request)
costs more CPU than the whole Raft round of a write; on a 2-core machine shared with the load
generator that CPU is the write throughput.

Requests on one connection are answered in order, one at a time (pipelined requests wait in
the buffer). A connection closes after "Connection: close", or at shutdown once its request in
flight is answered.

The parser only takes what aiohttp's would take the same way: a Host header, token header
names, CRLF line ends, RFC 3986 path characters; anything it is unsure of goes to aiohttp.
tests/runtime/test_fasthttp.py checks the answers against aiohttp's, including on mutated
input. Two known, deliberate differences: a client that half-closes after its requests gets
its answers (aiohttp closes at once), and good requests pipelined before a malformed one in
the same packet are answered before aiohttp's 400 (aiohttp answers only the 400).
"""

from __future__ import annotations

import asyncio
import http
import logging
import ssl
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any, cast

from aiohttp import web

from raftkv.errors import NotLeader, RaftkvError
from raftkv.kv.commands import Put, encode_command
from raftkv.kv.results import Result, Status
from raftkv.runtime.admission import HOP_HEADER, PEER_KEY_HEADER, Route, admit
from raftkv.runtime.conn_guard import ConnectionGuard, guarded
from raftkv.runtime.http_api import (
    HttpApi,
    result_response,
    revision_json,
    session_from,
)
from raftkv.runtime.http_auth import check_access
from raftkv.runtime.http_errors import error_response, from_exception, timeout_error
from raftkv.runtime.node import RaftRuntime
from raftkv.runtime.settings import NodeSettings

log = logging.getLogger("raftkv.http")

MAX_HEAD = 8192  # a bigger request head goes to aiohttp (which answers 431 or serves it)
MAX_BUFFERED = 4 * 1024 * 1024  # stop reading a connection that pipelines more than this
_PREFIX = b"/v1/kv/"
_CONSISTENCY = {
    b"": "linearizable",
    b"consistency=linearizable": "linearizable",
    b"consistency=lease": "lease",
    b"consistency=stale": "stale",
}
# RFC 3986 pchar and "/", without "%" (percent-encoding goes to aiohttp, which decodes it).
_PATH_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/"
# RFC 9110 token characters: anything else in a header name is aiohttp's to refuse.
_TOKEN_CHARS = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SESSION_HEADERS = (b"x-raftkv-client", b"x-raftkv-seq", b"x-raftkv-ack")
_HOP_HEADER = HOP_HEADER.lower().encode()
_PEER_KEY_HEADER = PEER_KEY_HEADER.lower().encode()
_REFUSED_HEADERS = frozenset((b"transfer-encoding", b"expect", b"upgrade"))
_REASONS = {s.value: s.phrase.encode() for s in http.HTTPStatus}

HandlerFactory = Callable[[], asyncio.Protocol]


class _Fallback(Exception):
    """This request is not for the fast path: hand the connection to aiohttp."""


class _Request:
    __slots__ = (
        "authorization",
        "body",
        "close",
        "consistency",
        "end",
        "hop",
        "key",
        "method",
        "peer_key",
        "session",
    )

    def __init__(self) -> None:
        self.method = b""
        self.key = ""
        self.consistency = "linearizable"
        self.session: tuple[str | None, str | None, str | None] = (None, None, None)
        self.body = b""
        self.close = False
        self.end = 0  # bytes of the buffer this request occupies
        self.authorization: str | None = None  # the Authorization header (auth: http_auth.py)
        self.hop: str | None = None  # X-Raftkv-Forwarded-By: a peer forwarded it
        self.peer_key: str | None = None  # X-Raftkv-Peer-Key (admission.py)


def parse_request(buf: bytearray, max_body: int) -> _Request | None:
    """The request at the start of buf; None if incomplete; _Fallback if not ours."""
    head_end = buf.find(b"\r\n\r\n", 0, MAX_HEAD)
    if head_end < 0:
        if len(buf) >= MAX_HEAD or buf.count(b"\n") != buf.count(b"\r\n"):
            raise _Fallback  # too big, or bare LF line ends (it might never see CRLF CRLF)
        return None
    head = bytes(buf[:head_end])
    if head.count(b"\n") != head.count(b"\r\n") or head.count(b"\r") != head.count(b"\r\n"):
        raise _Fallback  # a bare CR or LF: aiohttp's parser decides what that means
    if b"\0" in head:
        raise _Fallback
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[2] != b"HTTP/1.1":
        raise _Fallback
    method, target = parts[0], parts[1]
    if method not in (b"PUT", b"GET") or not target.startswith(_PREFIX):
        raise _Fallback
    path, _, query = target.partition(b"?")
    raw_key = path[len(_PREFIX) :]
    # aiohttp decodes %XX, normalizes dot segments and refuses characters outside RFC 3986's
    # path characters (raw UTF-8, spaces, quotes, ...): leave all that to it.
    if not raw_key or raw_key.translate(None, _PATH_CHARS) or b"/." in path or b"//" in path:
        raise _Fallback
    req = _Request()
    req.method = method
    try:
        req.key = raw_key.decode("utf-8")
    except UnicodeDecodeError:
        raise _Fallback from None
    if method == b"GET":
        consistency = _CONSISTENCY.get(query)
        if consistency is None:
            raise _Fallback
        req.consistency = consistency
    elif query:
        raise _Fallback
    length: int | None = None
    session: list[str | None] = [None, None, None]
    hosts = 0
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name.translate(None, _TOKEN_CHARS):
            raise _Fallback  # malformed (a space before the colon, obsolete line folding, ...)
        name = name.lower()
        value = value.strip()
        if name == b"host":
            hosts += 1  # aiohttp refuses an HTTP/1.1 request without one
        elif name == b"content-length":
            if length is not None or not value.isdigit():
                raise _Fallback
            length = int(value)
        elif name in _REFUSED_HEADERS:
            raise _Fallback
        elif name == b"connection":
            tokens = {t.strip() for t in value.lower().split(b",")}
            if b"upgrade" in tokens:
                raise _Fallback
            req.close = req.close or b"close" in tokens
        elif name == b"authorization":
            if req.authorization is not None:
                raise _Fallback
            try:
                req.authorization = value.decode("ascii")
            except UnicodeDecodeError:
                raise _Fallback from None
        elif name == b"x-raftkv-identity":
            raise _Fallback  # a forwarded identity: aiohttp checks who forwarded it
        elif name == _HOP_HEADER:
            if req.hop is not None:
                raise _Fallback
            req.hop = _ascii(value)
        elif name == _PEER_KEY_HEADER:
            if req.peer_key is not None:
                raise _Fallback
            req.peer_key = _ascii(value)
        elif name in _SESSION_HEADERS:
            k = _SESSION_HEADERS.index(name)
            if session[k] is not None:
                raise _Fallback
            try:
                session[k] = value.decode("ascii")
            except UnicodeDecodeError:
                raise _Fallback from None
    if hosts != 1:
        raise _Fallback
    if method == b"GET":
        if length or any(v is not None for v in session):
            raise _Fallback
        length = 0
    elif length is None or length > max_body:
        raise _Fallback
    req.session = (session[0], session[1], session[2])
    body_start = head_end + 4
    req.end = body_start + length
    if len(buf) < req.end:
        return None
    if req.close and len(buf) > req.end:
        raise _Fallback  # aiohttp answers 400 to bytes after "Connection: close"
    req.body = bytes(buf[body_start : req.end])
    return req


def _ascii(value: bytes) -> str:
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        raise _Fallback from None


class _Clock:
    """The Date header, formatted at most once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._header = b""

    def header(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._header = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self._header


_clock = _Clock()


def _head(status: int, content_type: bytes, length: int, extra: bytes = b"") -> bytes:
    return b"".join(
        (
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown")),
            b"Content-Type: ",
            content_type,
            b"\r\nContent-Length: %d\r\n" % length,
            _clock.header(),
            extra,
            b"\r\n",
        )
    )


def serialize(resp: web.Response) -> bytes:
    """An aiohttp Response built by the shared helpers, as HTTP/1.1 bytes."""
    body = resp.body
    if not isinstance(body, bytes):
        raise TypeError("fast path responses carry bytes bodies")
    extra = b"".join(
        f"{k}: {v}\r\n".encode("latin-1")
        for k, v in resp.headers.items()
        if k.lower() not in ("content-type", "content-length")
    )
    ctype = resp.headers.get("Content-Type", "application/octet-stream").encode("latin-1")
    return _head(resp.status, ctype, len(body), extra) + body


class FastProtocol(asyncio.Protocol):
    def __init__(
        self,
        api: HttpApi,
        node: RaftRuntime,
        settings: NodeSettings,
        fallback: HandlerFactory,
        conns: set[FastProtocol],
    ) -> None:
        self._api = api
        self._node = node
        self._settings = settings
        self._fallback_factory = fallback
        self._conns = conns
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._busy: _Request | None = None  # the request being served
        self._fut: asyncio.Future[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._paused = False
        self._eof = False
        self.closing = False  # close once the request in flight is answered
        self.requests = 0  # requests begun on the fast path (for the connection guard)
        # How to hand the connection to aiohttp; a ConnectionGuard replaces it (conn_guard.py).
        self.replace_protocol: Callable[[asyncio.Protocol], None] | None = None

    # --- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._conns.discard(self)
        self._transport = None
        if self._timer is not None:
            self._timer.cancel()
        # A write in flight stays proposed (it may commit); nobody waits for its answer.

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._busy is None:
            self._serve_next()
        elif len(self._buf) > MAX_BUFFERED and self._transport is not None:
            self._transport.pause_reading()
            self._paused = True

    def eof_received(self) -> bool | None:
        self._eof = True
        if self._busy is None:
            # Serves what is complete; closes on an empty buffer or a partial request (which
            # can never complete now), so a half-closed connection is never left open.
            self._serve_next()
        return True  # keep the write side open to answer what was received

    def guard_state(self) -> tuple[bool, int]:
        """(serving a request now, requests begun): for the connection guard."""
        return self._busy is not None, self.requests

    def close_when_idle(self) -> None:
        self.closing = True
        if self._busy is None and self._transport is not None:
            self._transport.close()

    # --- serving -----------------------------------------------------------------------

    def _serve_next(self) -> None:
        while self._busy is None and self._transport is not None:
            if not self._buf:
                if self._eof or self.closing:
                    self._transport.close()
                return
            try:
                req = parse_request(self._buf, self._settings.max_value_size)
                if req is None:
                    if self._eof:  # the client half-closed in the middle of a request
                        self._transport.close()
                    return
                self._start(req)
            except _Fallback:
                self._hand_over()
                return
        if self._paused and self._transport is not None and len(self._buf) < MAX_BUFFERED:
            self._paused = False
            self._transport.resume_reading()

    def _start(self, req: _Request) -> None:
        """Serve req or raise _Fallback (before consuming it)."""
        node, api = self._node, self._api
        conn = guarded(self._transport)
        if conn is not None and not admit(api.peers, conn, Route.OTHER, req.hop, req.peer_key):
            raise _Fallback  # over the client limit: aiohttp answers 503
        if not node.is_leader:
            raise _Fallback  # aiohttp forwards to the leader
        security = self._settings.security
        if security.auth_required:
            peercert = self._transport.get_extra_info("peercert") if self._transport else None
            try:
                method = req.method.decode()
                check_access(security, method, "/v1/kv/", req.authorization, peercert, None)
            except RaftkvError:
                raise _Fallback from None  # aiohttp answers 401 / 403
        try:
            api.check_key(req.key)
        except RaftkvError:
            raise _Fallback from None
        data = b""
        if req.method == b"PUT":
            try:
                api.check_value(req.body)
                session = session_from(*req.session)
                data = encode_command(Put(req.key, req.body, None), session)
            except (RaftkvError, ValueError, OverflowError):  # e.g. a seq over 2**64
                raise _Fallback from None  # aiohttp answers it, whatever it says
        del self._buf[: req.end]
        self._busy = req
        self.requests += 1
        if req.consistency == "stale":
            self._answer_get(req)
            return
        fut: asyncio.Future[Any]
        try:
            if req.method == b"PUT":
                fut = node.submit(data)
            else:
                fut = node.submit_read(lease=req.consistency == "lease")
        except RaftkvError as e:
            self._finish(serialize(from_exception(e)))
            return
        self._fut = fut
        timeout = self._settings.request_timeout_s
        self._timer = asyncio.get_running_loop().call_later(timeout, self._on_timeout)
        fut.add_done_callback(self._on_done)

    def _on_timeout(self) -> None:
        req, fut = self._busy, self._fut
        self._timer = None
        if req is None or fut is None or fut.done():
            return
        fut.cancel()  # only stops waiting: a write may still commit (the error says so)
        err = timeout_error(self._settings.request_timeout_s, write=req.method == b"PUT")
        self._finish(serialize(from_exception(err)))

    def _on_done(self, fut: asyncio.Future[Any]) -> None:
        req = self._busy
        if req is None or fut is not self._fut or fut.cancelled():
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        exc = fut.exception()
        if isinstance(exc, NotLeader):
            # Not appended, nothing answered yet: aiohttp replays it (and forwards it).
            self._replay(req)
            return
        if isinstance(exc, RaftkvError):
            self._finish(serialize(from_exception(exc)))
            return
        if exc is not None:
            log.error("fast path: unexpected error", exc_info=exc)
            self._finish(serialize(error_response(500, "internal", str(exc))))
            return
        if req.method == b"PUT":
            result, index = fut.result()
            self._finish(_put_answer(result, index))
        else:
            self._busy = None
            self._fut = None
            self._answer_get(req)

    def _answer_get(self, req: _Request) -> None:
        kv = self._node.kv.get(req.key)
        if kv is None:
            out = serialize(error_response(404, "not_found", f"key {req.key!r} does not exist"))
        else:
            extra = b"X-Raftkv-Revision: %d\r\n" % kv.mod_revision
            out = _head(200, b"application/octet-stream", len(kv.value), extra) + kv.value
        self._busy = req
        self._finish(out)

    def _finish(self, out: bytes) -> None:
        req = self._busy
        self._busy = None
        self._fut = None
        transport = self._transport
        if transport is None:
            return
        if (req is not None and req.close) or self.closing:
            # The last answer on this connection says so, as aiohttp's does.
            transport.write(out.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1))
            transport.close()
            return
        transport.write(out)
        if self._buf:
            # Pipelined requests: serve them after the callbacks already queued.
            asyncio.get_running_loop().call_soon(self._serve_next)
        elif self._eof:
            transport.close()

    # --- handing the connection to aiohttp ----------------------------------------------

    def _replay(self, req: _Request) -> None:
        """Give req (already consumed) back to aiohttp as the first bytes it sees."""
        raw = _rebuild(req)
        self._busy = None
        self._fut = None
        self._buf[:0] = raw
        self._hand_over()

    def _hand_over(self) -> None:
        transport = self._transport
        if transport is None:
            return
        handler = self._fallback_factory()
        self._conns.discard(self)
        self._transport = None
        if self.replace_protocol is not None:
            self.replace_protocol(handler)
        else:
            transport.set_protocol(handler)
        handler.connection_made(transport)
        if self._paused:
            transport.resume_reading()
        data, self._buf = bytes(self._buf), bytearray()
        if data:
            handler.data_received(data)
        if self._eof:
            handler.eof_received()


def _put_answer(result: Result, index: int) -> bytes:
    if result.status is Status.OK and not result.duplicate:
        body = b'{"revision":%d,"index":%d}' % (result.revision, index)
        return _head(200, b"application/json", len(body)) + body
    return serialize(result_response(result, index, revision_json))


def _rebuild(req: _Request) -> bytes:
    """An equivalent request for aiohttp (only what the handlers read is kept)."""
    names = ("X-Raftkv-Client", "X-Raftkv-Seq", "X-Raftkv-Ack", HOP_HEADER, PEER_KEY_HEADER)
    values = (*req.session, req.hop, req.peer_key)
    headers = "".join(f"{n}: {v}\r\n" for n, v in zip(names, values, strict=True) if v)
    if req.authorization is not None:
        headers += f"Authorization: {req.authorization}\r\n"
    if req.method == b"PUT":
        target = f"/v1/kv/{req.key}"
    else:
        target = f"/v1/kv/{req.key}?consistency={req.consistency}"
    head = (
        f"{req.method.decode()} {target} HTTP/1.1\r\nHost: raftkv\r\n{headers}"
        f"Content-Length: {len(req.body)}\r\n"
        + ("Connection: close\r\n" if req.close else "")
        + "\r\n"
    )
    return head.encode("utf-8") + req.body


class FastSite(web.TCPSite):
    """A TCPSite whose connections start on the fast path (see the module docstring)."""

    def __init__(
        self,
        runner: web.AppRunner,
        api: HttpApi,
        node: RaftRuntime,
        settings: NodeSettings,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        guard: ConnectionGuard | None = None,
    ) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context)
        self._guard = guard
        self._api = api
        self._node = node
        self._settings = settings
        self._conns: set[FastProtocol] = set()

    async def start(self) -> None:
        # BaseSite.start registers the site; TCPSite.start would create aiohttp's server.
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        api, node, settings, conns = self._api, self._node, self._settings, self._conns

        def factory() -> asyncio.Protocol:
            return FastProtocol(api, node, settings, server, conns)

        loop = asyncio.get_running_loop()
        guard = self._guard
        self._server = await loop.create_server(
            guard.wrap(factory) if guard is not None else factory,
            self._host,
            self._port,
            ssl=self._ssl_context,
            ssl_handshake_timeout=(
                self._settings.security.handshake_timeout_s if self._ssl_context else None
            ),
            backlog=self._backlog,
            reuse_address=True,
        )
        if guard is not None:
            guard.start()
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port

    async def stop(self) -> None:
        await super().stop()
        for conn in list(self._conns):
            conn.close_when_idle()
        if self._guard is not None:
            await self._guard.stop()
