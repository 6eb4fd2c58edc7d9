"""The node's one HTTP/1.1 server: httptools (llhttp, the parser uvicorn uses) on an asyncio
Protocol, every connection under a ConnectionGuard (conn_guard.py), TLS when configured.

Every request of every route takes the same path (HttpApp):

    head parsed   -> admission (which connection budget: admission.py), authentication and
                     authorization (http_auth.py), the route (404 / 405), the body limit (413):
                     a refusal is answered without reading the body
    body read     -> within read_timeout_s of the head, else 408 (the reaper closes a
                     connection whose head dribbles in: conn_guard.py)
    handler       -> a Response, a future of one, or a coroutine (http_types.py); errors
                     are JSON (http_errors.py); a forwarded request's answer names the leader

Requests on one connection are answered in order, one at a time (pipelined requests wait, and
reading pauses while MAX_QUEUED wait). A connection closes after "Connection: close" (or an
HTTP/1.0 request without keep-alive), after a refusal whose body was not read, after an SSE
stream, after malformed input (answered 400 / 431 first), and at shutdown once its request in
flight is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any, cast
from urllib.parse import unquote_to_bytes

import httptools

from raftkv.errors import BadRequest, RaftkvError, TooLarge, TooManyConnections
from raftkv.runtime.admission import (
    HOP_HEADER,
    PEER_KEY_HEADER,
    PeerPolicy,
    admit,
    traffic_of,
)
from raftkv.runtime.conn_guard import (
    Budget,
    ConnectionGuard,
    GuardedProtocol,
    guarded,
    too_many_message,
)
from raftkv.runtime.http_auth import check_access
from raftkv.runtime.http_errors import error_response, from_exception
from raftkv.runtime.http_types import NoRoute, Pending, Request, Response, Router
from raftkv.runtime.settings import NodeSettings
from raftkv.security.auth import FORWARDED_IDENTITY_HEADER
from raftkv.security.config import SecurityConfig
from raftkv.security.tls import http_server_context

log = logging.getLogger("raftkv.http")

MAX_LINE = 8190  # longest request target (bytes): longer gets 431
MAX_HEAD = 64 * 1024  # longest request head in all: longer gets 431
MAX_QUEUED = 16  # pipelined requests waiting on one connection before reading pauses
SHUTDOWN_TIMEOUT_S = 3.0  # how long stop() lets requests in flight finish
LEADER_HEADER = "X-Raftkv-Leader"
_HOP, _PEER_KEY = HOP_HEADER.lower(), PEER_KEY_HEADER.lower()
_IDENTITY = FORWARDED_IDENTITY_HEADER.lower()
_REASONS = {s.value: s.phrase.encode() for s in http.HTTPStatus}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_STATUS_LINES: dict[int, bytes] = {}
_NAMES: dict[bytes, str] = {}  # header names as sent -> lower-case str (clients repeat them)
_CONTENT_TYPES = {t: t.encode() for t in ("application/json", "application/octet-stream")}
_METHODS = {m.encode(): m for m in ("GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS", "PATCH")}
MAX_NAMES = 512


class HttpApp:
    """The request path every route takes (see the module docstring); the protocol gives
    every answer its last touches (_respond)."""

    def __init__(self, router: Router, security: SecurityConfig, peers: PeerPolicy) -> None:
        self.router = router
        self.security = security
        self.peers = peers
        self._auth = security.auth_required

    def prepare(self, req: Request, length: int | None) -> Response | None:
        """Once the head is in: a refusal, or None to read the body and run the handler."""
        h = req.headers
        conn = req.conn
        hop = h.get(_HOP)
        # (a client connection without the forwarding header is admitted: skip the rules)
        if (
            conn is not None
            and (hop is not None or conn.budget is not Budget.CLIENT)
            and not admit(self.peers, conn, traffic_of(req.method, req.path), hop, h.get(_PEER_KEY))
        ):
            refusal = from_exception(
                TooManyConnections(too_many_message(conn.guard.config.max_http_connections))
            )
            refusal.force_close()
            return refusal
        try:
            if self._auth:
                req.identity = check_access(
                    self.security,
                    req.method,
                    req.path,
                    h.get("authorization"),
                    req.peercert,
                    h.get(_IDENTITY),
                )
            route, req.params = self.router.match(req.method, req.path)
        except RaftkvError as e:
            return from_exception(e)
        except NoRoute as e:
            return _no_route(req, e)
        req.route = route
        if length is not None and length > route.max_body:
            return from_exception(
                TooLarge(f"{route.what} is {length} bytes, the limit is {route.max_body}")
            )
        return None


def _no_route(req: Request, e: NoRoute) -> Response:
    if e.allowed:
        return error_response(
            405,
            "method_not_allowed",
            f"{req.method} is not allowed on {req.path}",
            headers={"Allow": ",".join(e.allowed)},
        )
    return error_response(404, "not_found", f"no route for {req.method} {req.path}")


# A request waiting for its turn: (the request, or None for input that never became one;
# its refusal, decided already, or None; close the connection after answering it).
_Entry = tuple[Request | None, Response | None, bool]


class StreamedResponse(Response):
    """What a streaming handler returns once it has written its answer (sse.py)."""


class HttpProtocol(asyncio.Protocol):
    """One HTTP connection (inside its GuardedProtocol)."""

    def __init__(self, app: HttpApp, conns: set[HttpProtocol]) -> None:
        self._app = app
        self._conns = conns
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._peercert: Any = None
        self._guarded: GuardedProtocol | None = None
        # the request being received
        self._url = b""
        self._headers: dict[str, str] = {}
        self._head = 0
        self._current: Request | None = None
        self._body: list[bytes] = []
        self._body_len = 0
        self._body_timer: asyncio.TimerHandle | None = None
        self._parsing = True  # False: input after a refusal or an error is ignored
        self._refused: Response | None = None  # the refusal of a request without a body
        # requests in order
        self._queue: deque[_Entry] = deque()
        self._busy: _Entry | None = None
        self._answer: asyncio.Future[Any] | None = None  # the busy request's task
        self._pending: Pending | None = None  # or what it waits for, until _deadline
        self._deadline = 0.0
        # One timer checks the deadlines of the Pendings of this connection (not one per
        # request): it is due no later than the current one's, and moves on when early.
        self._timer: asyncio.TimerHandle | None = None
        self._streaming = False  # the busy request's answer is a stream, begun
        self._chunked = False
        self._begun = 0  # request heads and bodies received (progress, for the reaper)
        self._closing = False  # close once the request in flight is answered
        self._paused = False
        self._write_paused = False
        self._drained: asyncio.Future[None] | None = None

    # --- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._peercert = transport.get_extra_info("peercert")
        self._guarded = guarded(transport)  # the guard wraps this protocol (conn_guard.py)
        self._conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._conns.discard(self)
        self._transport = None
        if self._body_timer is not None:
            self._body_timer.cancel()
        if self._timer is not None:
            self._timer.cancel()
        if self._pending is not None:
            self._pending.cancel()  # a write in flight stays proposed: only the wait ends
            self._pending = None
        if self._answer is not None:
            self._answer.cancel()  # a write in flight stays proposed: only the wait ends
        self._queue.clear()
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(ConnectionResetError("the client went away"))

    def data_received(self, data: bytes) -> None:
        if not self._parsing:
            return
        if self._current is None:
            self._head += len(data)  # bytes since the last head ended (reset by the callbacks)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._stop(None)  # the request is queued; nothing is upgraded
        except httptools.HttpParserCallbackError as e:
            cause = e.__context__
            if isinstance(cause, _HeadTooLarge):
                self._stop(error_response(431, "request_header_fields_too_large", str(cause)))
            elif isinstance(cause, _BodyTooLarge):
                self._stop(from_exception(TooLarge(str(cause))))
            else:
                log.error("HTTP request handling failed", exc_info=cause)
                self._stop(error_response(500, "internal", "internal error"))
        except httptools.HttpParserError as e:
            reason = " ".join(str(e).split())[:300] or type(e).__name__
            log.debug("refused malformed HTTP: %s", reason)
            self._stop(error_response(400, "bad_request", f"malformed HTTP request: {reason}"))
        if self._head > MAX_HEAD and (self._url or self._headers):
            # a head still incomplete after that many bytes (the parser keeps what it got)
            self._stop(_head_too_large())
        current = self._current
        if current is not None and current.route is not None and self._body_timer is None:
            # its body is still on the way: it must arrive within read_timeout_s
            timeout = self._app.security.read_timeout_s
            loop = asyncio.get_running_loop()
            self._body_timer = loop.call_later(timeout, self._body_late, current, timeout)
        self._serve_next()

    def eof_received(self) -> bool | None:
        if self._streaming:
            return None  # the stream's client is gone: close (connection_lost ends it)
        # Answer what was received, then close (a partial request can never complete).
        self._parsing = False
        self._current = None
        self._closing = True
        if self._busy is None and not self._queue and self._transport is not None:
            self._transport.close()
        return True

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    # --- for the connection guard and shutdown -------------------------------------------

    def guard_state(self) -> tuple[bool, int]:
        """(serving a request now, progress made so far): for the reaper."""
        serving = self._busy is not None or bool(self._queue) or self._current is not None
        return serving, self._begun

    def close_when_idle(self) -> None:
        self._closing = True
        if self._busy is None and not self._queue and self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # --- httptools callbacks ---------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_LINE:
            raise _HeadTooLarge(f"the request target is over {MAX_LINE} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        # (the head's size is bounded as it arrives: data_received)
        key = _NAMES.get(name)
        if key is None:
            key = name.lower().decode("latin-1")
            if len(_NAMES) < MAX_NAMES and len(name) <= 64:
                _NAMES[name] = key
        headers = self._headers
        if key in headers:
            headers[key] += ", " + value.decode("latin-1")
        else:
            headers[key] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._begun += 1
        parser = self._parser
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method) or raw_method.decode("ascii", "replace")
        version = parser.get_http_version()
        headers, url = self._headers, self._url
        self._headers, self._url, self._head = {}, b"", 0  # for the next request
        if len(url) + sum(map(len, headers)) + sum(map(len, headers.values())) > MAX_HEAD:
            self._stop(_head_too_large())
            return
        path, query, problem = _target(url)
        req = Request(method, path, query, headers, version)
        req.conn = self._guarded
        req.peercert = self._peercert
        req.sink = self
        chunked = (
            "transfer-encoding" in headers and "chunked" in headers["transfer-encoding"].lower()
        )
        length_text = headers.get("content-length")
        length = int(length_text) if length_text is not None else None
        if version == "1.1":
            host = headers.get("host")
            if problem is None and (host is None or "," in host):
                problem = "an HTTP/1.1 request needs exactly one Host header"
        elif problem is None and version != "1.0":
            problem = f"HTTP/{version} is not supported (use HTTP/1.1)"
        refusal = (
            from_exception(BadRequest(problem))
            if problem is not None
            else self._app.prepare(req, length)
        )
        pending_body = chunked or bool(length)
        if refusal is not None:
            if pending_body:  # not read: the connection cannot be used again
                self._stop(refusal, req)
            else:
                self._current = req
                req.route = None
                self._refused = refusal
            return
        self._current = req
        self._refused = None
        if pending_body:
            expects = headers.get("expect", "").lower() == "100-continue" and version == "1.1"
            # (the interim answer must not come before the answers of earlier requests)
            if expects and self._busy is None and not self._queue and self._transport:
                self._transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        req = self._current
        if req is None or req.route is None:
            return
        self._body.append(body)
        self._body_len += len(body)
        if self._body_len > req.route.max_body:
            what, limit = req.route.what, req.route.max_body
            raise _BodyTooLarge(f"{what} is over the limit of {limit} bytes")

    def on_message_complete(self) -> None:
        req = self._current
        self._current = None
        self._head = 0
        self._begun += 1
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        if req is None:
            return
        body = self._body
        if body:
            req.body = body[0] if len(body) == 1 else b"".join(body)
            self._body = []
            self._body_len = 0
        close = not self._parser.should_keep_alive()
        self._queue.append((req, self._refused, close))
        self._refused = None
        if len(self._queue) >= MAX_QUEUED and self._transport is not None and not self._paused:
            self._paused = True
            self._transport.pause_reading()

    def _body_late(self, req: Request, timeout: float) -> None:
        self._body_timer = None
        if self._current is not req:
            return
        late = error_response(
            408, "request_timeout", f"the request body did not arrive within {timeout:g}s"
        )
        self._stop(late, req)
        self._serve_next()

    def _stop(self, refusal: Response | None, req: Request | None = None) -> None:
        """Parse nothing more on this connection; answer refusal (if any) after what is
        queued, then close."""
        self._parsing = False
        self._current = None
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        if refusal is not None:
            self._queue.append((req, refusal, True))
        elif self._queue:
            last, refused, _ = self._queue[-1]
            self._queue[-1] = (last, refused, True)
        else:
            self._closing = True

    # --- serving ---------------------------------------------------------------------

    def _serve_next(self) -> None:
        while self._busy is None and self._queue and self._transport is not None:
            entry = self._queue.popleft()
            req, refusal, _ = entry
            if refusal is not None:
                self._respond(entry, refusal)
                continue
            assert req is not None and req.route is not None
            try:
                answer = req.route.handler(req)
            except RaftkvError as e:
                self._respond(entry, from_exception(e))
                continue
            except Exception as e:
                self._respond(entry, _internal(e))
                continue
            if isinstance(answer, Response):
                self._respond(entry, answer)
                continue
            self._busy = entry
            if isinstance(answer, Pending):
                self._wait(answer)
            else:
                self._answer = asyncio.ensure_future(answer)
                self._answer.add_done_callback(self._answered)
        if self._transport is None:
            return
        if self._paused and len(self._queue) < MAX_QUEUED:
            self._paused = False
            self._transport.resume_reading()
        if self._closing and self._busy is None and not self._queue:
            self._transport.close()

    def _wait(self, pending: Pending) -> None:
        """Answer the busy request once pending resolves, or once it is late."""
        self._pending = pending
        self._deadline = deadline = asyncio.get_running_loop().time() + pending.timeout
        if self._timer is None or self._timer.when() > deadline:
            self._arm(deadline)
        pending.listen(self._resolved)

    def _arm(self, due: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(due, self._check_late)

    def _check_late(self) -> None:
        self._timer = None
        pending = self._pending
        if pending is None:
            return
        if asyncio.get_running_loop().time() < self._deadline:  # was due for an earlier one
            self._arm(self._deadline)
            return
        self._pending = None
        pending.cancel()  # stops waiting only
        self._settle(pending.on_timeout())

    def _resolved(self, pending: Pending, result: Any, error: BaseException | None) -> None:
        """pending's outcome (called from inside the driver's step: Pending guards it)."""
        if pending is not self._pending:
            return
        self._pending = None
        if error is None:
            try:
                self._settle(pending.on_result(result))
            except Exception as e:
                self._settle(e)
            return
        retry = pending.otherwise(error)
        if retry is None:
            self._settle(error)
            return
        self._answer = asyncio.ensure_future(retry)
        self._answer.add_done_callback(self._answered)

    def _settle(self, outcome: Response | BaseException) -> None:
        """Answer the busy request (its Pending is done) and go on."""
        entry = self._busy
        self._busy = None
        if entry is not None:
            self._finish(entry, outcome)

    def _finish(self, entry: _Entry, outcome: Response | BaseException) -> None:
        """Answer entry with outcome (an error becomes its JSON answer) and serve the next."""
        if isinstance(outcome, Response):
            resp = outcome
        elif isinstance(outcome, RaftkvError):
            resp = from_exception(outcome)
        else:
            resp = _internal(outcome)
        self._respond(entry, resp)
        self._serve_next()

    def _answered(self, fut: asyncio.Future[Any]) -> None:
        entry = self._busy
        if fut is not self._answer or entry is None:
            return
        self._busy = None
        self._answer = None
        if fut.cancelled():
            return  # the connection is gone
        exc = fut.exception()
        if self._streaming:
            self._end_stream(exc)
            return
        self._finish(entry, fut.result() if exc is None else exc)

    def _respond(self, entry: _Entry, resp: Response) -> None:
        transport = self._transport
        if transport is None:
            return
        req, _, close_after = entry
        if req is not None:  # the last touches every answer gets
            if req.leader is not None and LEADER_HEADER not in resp.headers:
                resp.headers[LEADER_HEADER] = req.leader  # forwarded: where the leader is
            conn = req.conn
            if conn is not None and conn.budget is Budget.OVERFLOW:
                resp.force_close()  # over the client limit: one answer (/healthz), then close
        close = resp.close or close_after or (self._closing and not self._queue)
        head_only = req is not None and req.method == "HEAD"
        transport.write(
            _serialize(resp, close, head_only, req is not None and req.version == "1.0")
        )
        if close:
            self._parsing = False
            self._queue.clear()
            transport.close()

    # --- streams (sse.py) --------------------------------------------------------------

    def start_stream(self, status: int, headers: dict[str, str]) -> None:
        """Begin the busy request's answer as a stream of chunks; it ends with the handler,
        and the connection with it."""
        transport = self._transport
        if transport is None:
            raise ConnectionResetError("the client went away")
        entry = self._busy
        self._streaming = True
        self._chunked = entry is None or entry[0] is None or entry[0].version != "1.0"
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))]
        lines += [f"{k}: {v}\r\n".encode("latin-1") for k, v in headers.items()]
        if self._chunked:
            lines.append(b"Transfer-Encoding: chunked\r\n")
        lines += [_date(), b"Connection: close\r\n\r\n"]
        transport.write(b"".join(lines))

    async def write_stream(self, chunk: bytes) -> None:
        """Send chunk; wait while the client does not take what was sent before."""
        transport = self._transport
        if transport is None:
            raise ConnectionResetError("the client went away")
        if self._chunked:
            transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        else:
            transport.write(chunk)
        if self._write_paused:
            if self._drained is None:
                self._drained = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._drained)

    def _end_stream(self, exc: BaseException | None) -> None:
        self._streaming = False
        transport = self._transport
        if transport is None:
            return
        if exc is not None and not isinstance(exc, (ConnectionError, OSError)):
            log.error("an HTTP stream ended with an error", exc_info=exc)
        if self._chunked and exc is None:
            transport.write(b"0\r\n\r\n")
        self._parsing = False
        self._queue.clear()
        transport.close()


class _HeadTooLarge(Exception):
    pass


class _BodyTooLarge(Exception):
    pass


def _target(url: bytes) -> tuple[str, str, str | None]:
    """(decoded path, raw query string, a problem or None) of a request target."""
    if url[:1] == b"/" and b"%" not in url and b"#" not in url:  # the usual case, quickly
        raw_path, _, raw_query = url.partition(b"?")
        try:
            return raw_path.decode(), raw_query.decode("ascii"), None
        except UnicodeDecodeError:
            return "", "", "the request target is not valid UTF-8 (percent-encoded)"
    if not url.startswith(b"/"):
        try:
            parsed = httptools.parse_url(url)  # absolute form: http://host/path?query
        except httptools.HttpParserInvalidURLError:
            return "", "", f"bad request target {url[:100]!r}"
        if parsed.schema is None or parsed.path is None:
            return "", "", f"bad request target {url[:100]!r}"
        raw_path, raw_query = parsed.path, parsed.query or b""
    else:
        raw_path, _, raw_query = url.partition(b"?")
        if b"#" in url:
            raw_query = raw_query.partition(b"#")[0]
            raw_path = raw_path.partition(b"#")[0]
    try:
        if b"%" in raw_path:
            raw_path = unquote_to_bytes(raw_path)
        path = raw_path.decode("utf-8")
        query = raw_query.decode("ascii")
    except UnicodeDecodeError:
        return "", "", "the request target is not valid UTF-8 (percent-encoded)"
    return path, query, None


def _head_too_large() -> Response:
    return error_response(
        431, "request_header_fields_too_large", f"the request head is over {MAX_HEAD} bytes"
    )


def _internal(exc: BaseException) -> Response:
    log.error("error handling an HTTP request", exc_info=exc)
    return error_response(500, "internal", "internal error")


class _Clock:
    """The Date header, formatted at most once per second."""

    second = -1
    header = b""


def _date() -> bytes:
    now = int(time.time())
    if now != _Clock.second:
        _Clock.second = now
        _Clock.header = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
    return _Clock.header


def _serialize(resp: Response, close: bool, head_only: bool, http10: bool) -> bytes:
    body = resp.body
    extra = (
        "".join(f"{k}: {v}\r\n" for k, v in resp.headers.items()).encode("latin-1")
        if resp.headers
        else b""
    )
    if close:
        extra += b"Connection: close\r\n"
    elif http10:
        extra += b"Connection: keep-alive\r\n"
    return b"%sContent-Type: %s\r\nContent-Length: %d\r\n%s%s\r\n%s" % (
        _status_line(resp.status),
        _CONTENT_TYPES.get(resp.content_type) or resp.content_type.encode("latin-1"),
        len(body),
        _date(),
        extra,
        b"" if head_only else body,
    )


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        reason = _REASONS.get(status, b"Unknown")
        line = _STATUS_LINES[status] = b"HTTP/1.1 %d %s\r\n" % (status, reason)
    return line


class HttpServer:
    """A node's HTTP listener (the shell's HttpFront): settings.http, TLS when configured,
    every connection under a ConnectionGuard whose budgets admission.py assigns.
    stop(): stop listening, close idle connections; drain(): let the requests in flight
    finish for up to SHUTDOWN_TIMEOUT_S, then cut the rest."""

    def __init__(
        self,
        settings: NodeSettings,
        router: Router,
        peers: PeerPolicy,
        *,
        close_streams: Callable[[], None] = lambda: None,
        after: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        security = settings.security
        if security.tokens is not None and security.tls is None:
            log.warning(
                "%s: bearer tokens without TLS travel in clear text (use --tls-dir)",
                settings.node_id,
            )
        self._app = HttpApp(router, security, peers)
        self._host, self._port = settings.http
        self.guard = ConnectionGuard(security, peers.node_of_cert)
        self._ssl = http_server_context(security.tls) if security.tls is not None else None
        self.close_streams = close_streams
        self._after = after  # run once drained (the forwarder's client closes)
        self._server: asyncio.Server | None = None
        self._conns: set[HttpProtocol] = set()

    async def start(self) -> int:
        """Listen; the bound port."""
        app, conns = self._app, self._conns

        def factory() -> asyncio.Protocol:
            return HttpProtocol(app, conns)

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.guard.wrap(factory),
            self._host,
            self._port,
            ssl=self._ssl,
            ssl_handshake_timeout=(
                self.guard.config.handshake_timeout_s if self._ssl is not None else None
            ),
            reuse_address=True,
        )
        self.guard.start()
        sockets = self._server.sockets
        return int(sockets[0].getsockname()[1]) if sockets else self._port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            conn.close_when_idle()

    async def drain(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SHUTDOWN_TIMEOUT_S
        while self._conns and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self._conns):
            conn.abort()
        await self.guard.stop()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
        if self._after is not None:
            await self._after()
