"""What the HTTP server (http_server.py) hands to handlers and takes back: Request, Response,
and the Router that picks a request's handler.

A handler returns its answer in one of three ways, so a hot route needs no task:
a Response (answered at once), a Pending (answered when the driver resolves it: a write
waiting for its commit), or a coroutine (run as a task: anything that awaits). A RaftkvError
the handler, the Pending or the coroutine raises is answered as JSON (http_errors.py).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl

log = logging.getLogger("raftkv.http")

if TYPE_CHECKING:
    from raftkv.runtime.conn_guard import GuardedProtocol
    from raftkv.security.auth import Identity


class StreamSink(Protocol):
    """The connection a streaming answer is written to (http_server.HttpProtocol)."""

    def start_stream(self, status: int, headers: dict[str, str]) -> None: ...

    async def write_stream(self, chunk: bytes) -> None: ...

    def abort(self) -> None: ...


class Request:
    """One parsed request. Header names are lower-case; a repeated header's values are
    joined with ", " (RFC 9110 5.3)."""

    __slots__ = (
        "_query",
        "body",
        "conn",
        "headers",
        "identity",
        "leader",
        "method",
        "params",
        "path",
        "peercert",
        "query_string",
        "route",
        "sink",
        "version",
    )

    def __init__(
        self,
        method: str,
        path: str,
        query_string: str,
        headers: dict[str, str],
        version: str = "1.1",
    ) -> None:
        self.method = method
        self.path = path  # percent-decoded
        self.query_string = query_string
        self.headers = headers
        self.version = version
        self.body = b""
        self.params: dict[str, str] = {}  # from the route's {name} parts
        self.route: Route | None = None  # the route, once the head was accepted
        self.sink: StreamSink | None = None  # where a streaming answer goes
        self.conn: GuardedProtocol | None = None  # the connection's guard (budgets)
        self.peercert: Any = None  # the verified TLS client certificate, if any
        self.identity: Identity | None = None  # who is calling (authentication on)
        self.leader: str | None = None  # set once the request was forwarded to the leader
        self._query: dict[str, list[str]] | None = None

    @property
    def query(self) -> dict[str, list[str]]:
        """name -> values, in order ("+" and %XX decoded as in a form)."""
        if self._query is None:
            query: dict[str, list[str]] = {}
            text = self.query_string
            if "%" in text or "+" in text:
                pairs = parse_qsl(text, keep_blank_values=True)
            else:  # nothing to decode (the usual case): the same pairs, faster
                pairs = [part.partition("=")[::2] for part in text.split("&") if part]
            for name, value in pairs:
                query.setdefault(name, []).append(value)
            self._query = query
        return self._query

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The first value of query parameter name."""
        if not self.query_string:
            return default
        values = self.query.get(name)
        return values[0] if values else default


class Response:
    """A complete answer: status, body, content type and extra headers."""

    __slots__ = ("body", "close", "content_type", "headers", "status")

    def __init__(
        self,
        body: bytes = b"",
        status: int = 200,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.body = body
        self.status = status
        self.content_type = content_type
        self.headers: dict[str, str] = {} if headers is None else headers
        self.close = False  # close the connection after this answer

    def force_close(self) -> None:
        self.close = True


class Pending:
    """An answer that waits without a task or a future: it is the driver's Waiter
    (driver/ports.py) of a write's commit or a read's barrier. on_result(its result) is the
    answer once it resolves; on_timeout() (an error) if it has not within timeout; if it
    fails, otherwise(its error) may give a coroutine whose answer is used instead (a
    follower's retry at the new leader), else the error is the answer.

    The server listens (listen) after the handler returned it; an outcome that came before
    is kept until then. cancel() stops waiting (a write may still commit): the driver skips
    a waiter that is done(). The listener runs inside the driver's step, so nothing it
    raises may escape: it is logged, and the connection is the one to suffer."""

    __slots__ = (
        "_done",
        "_listener",
        "_outcome",
        "on_result",
        "on_timeout",
        "otherwise",
        "timeout",
    )

    def __init__(
        self,
        on_result: Callable[[Any], Response],
        *,
        timeout: float,
        on_timeout: Callable[[], BaseException],
        otherwise: Callable[[BaseException], Coroutine[Any, Any, Response] | None],
    ) -> None:
        self.on_result = on_result
        self.timeout = timeout
        self.on_timeout = on_timeout
        self.otherwise = otherwise
        self._done = False
        self._listener: Listener | None = None
        self._outcome: tuple[Any, BaseException | None] | None = None

    # --- the driver's Waiter -------------------------------------------------------------

    def done(self) -> bool:
        return self._done

    def set_result(self, result: Any, /) -> None:
        if not self._done:
            self._done = True
            self._deliver(result, None)

    def set_exception(self, exception: BaseException, /) -> None:
        if not self._done:
            self._done = True
            self._deliver(None, exception)

    # --- the server's side ---------------------------------------------------------------

    def listen(self, listener: Listener) -> None:
        """Call listener(self, result, error) once this resolves (at once if it has)."""
        self._listener = listener
        outcome, self._outcome = self._outcome, None
        if outcome is not None:
            self._deliver(*outcome)

    def cancel(self) -> None:
        """Stop waiting: no outcome is delivered from now on."""
        self._done = True
        self._listener = None
        self._outcome = None

    def _deliver(self, result: Any, error: BaseException | None) -> None:
        listener = self._listener
        if listener is None:
            self._outcome = (result, error)  # until the server listens
            return
        self._listener = None
        try:
            listener(self, result, error)
        except Exception:
            log.exception("answering an HTTP request failed")


Listener = Callable[[Pending, Any, BaseException | None], None]


# A handler answers at once (a Response), later without a task (Pending), or as a coroutine.
Answered = Response | Pending | Coroutine[Any, Any, Response]
Handler = Callable[[Request], Answered]


@dataclass(frozen=True, slots=True)
class Route:
    handler: Handler
    max_body: int  # a longer body is refused with 413 before it is read
    what: str  # what the body is, for that 413's message


class NoRoute(Exception):
    """No route for the path (404), or none for the method (405: allowed says which)."""

    def __init__(self, allowed: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.allowed = allowed


class Router:
    """Routes by exact path, or by a pattern whose {name} parts match one path segment and
    whose {name:.+} part (last) matches the rest of the path, slashes included."""

    def __init__(self, max_body: int) -> None:
        self._max_body = max_body
        self._exact: dict[str, dict[str, Route]] = {}
        # PREFIX{name:.+}: (prefix, name, routes by method), tried first
        self._prefixes: list[tuple[str, str, dict[str, Route]]] = []
        self._patterns: list[tuple[str, re.Pattern[str], dict[str, Route]]] = []

    def add(
        self,
        method: str,
        pattern: str,
        handler: Handler,
        *,
        max_body: int | None = None,
        what: str = "request body",
    ) -> None:
        route = Route(handler, self._max_body if max_body is None else max_body, what)
        if "{" not in pattern:
            self._exact.setdefault(pattern, {})[method] = route
            return
        rest = re.fullmatch(r"([^{}]*)\{(\w+):\.\+\}", pattern)
        if rest is not None:
            prefix, name = rest.groups()
            for known, _, by_method in self._prefixes:
                if known == prefix:
                    by_method[method] = route
                    return
            self._prefixes.append((prefix, name, {method: route}))
            return
        for text, _, methods in self._patterns:
            if text == pattern:
                methods[method] = route
                return
        regex = re.escape(pattern)
        regex = re.sub(r"\\\{(\w+):\\\.\\\+\\\}", r"(?P<\1>.+)", regex)
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", regex)
        self._patterns.append((pattern, re.compile(regex), {method: route}))

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """The route and its {name} values; NoRoute when there is none."""
        methods = self._exact.get(path)
        params: dict[str, str] = {}
        if methods is None:
            for prefix, name, candidates in self._prefixes:
                if path.startswith(prefix) and len(path) > len(prefix):
                    methods, params = candidates, {name: path[len(prefix) :]}
                    break
        if methods is None:
            for _, regex, candidates in self._patterns:
                found = regex.fullmatch(path)
                if found is not None:
                    methods, params = candidates, found.groupdict()
                    break
            else:
                raise NoRoute()
        route = methods.get(method)
        if route is None:
            raise NoRoute(tuple(sorted(methods)))
        return route, params
