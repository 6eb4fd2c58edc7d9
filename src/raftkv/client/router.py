"""Request routing for the clients: which endpoint, when to retry, and what a failure means.

Invariants:
- A write carries one session seq for all its attempts, so retrying it anywhere, any number of
  times, applies it at most once (the server answers a repeated seq from its session cache).
- A write gives up with Timeout ("may have committed") iff some attempt may have reached the
  server without a definite answer; otherwise the last definite error is raised.
- A write whose session the server no longer knows (410 session_expired: that attempt was not
  applied) moves to a new session only if no earlier attempt may have been applied; otherwise
  it raises SessionExpired (a Timeout: outcome unknown), since no retry could tell.
- Requests go to the known leader's endpoint first (followers would forward anyway, at the cost
  of one more hop); the leader is found through GET /v1/status on every endpoint.
- An answer no raftkv node gives (an error without raftkv's JSON error shape, a non-JSON body
  where JSON is due) is WrongEndpoint at once: the endpoint list is wrong, retrying cannot help.
- With policy.refused_grace set, a request gives up (Unavailable) once every endpoint has
  refused connections for that long: nothing listens, so nothing was sent. An endpoint that
  answers, times out or is slow to accept keeps it retrying until the deadline.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from raftkv.client.credentials import Credentials
from raftkv.client.errors import (
    AnswerVerdict,
    ServerError,
    Unavailable,
    WrongEndpoint,
    classify,
    error_from_response,
    is_raftkv_error,
    parse_error_body,
    wrong_endpoint,
)
from raftkv.client.http import client_session
from raftkv.client.session import ClientSession, SessionKeeper
from raftkv.client.types import ServerStatus
from raftkv.errors import RaftkvError, SessionExpired, Timeout

LEADER_HEADER = "X-Raftkv-Leader"
DISCOVERY_INTERVAL_S = 0.25  # at most one discovery round per interval while no leader is known
MIN_ATTEMPT_S = 0.05  # no retry is started with less time than this before the deadline


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    timeout: float = 10.0  # one whole operation, every retry included
    attempt_timeout: float = 6.0  # one HTTP attempt; above the server's own 5 s request timeout
    backoff_base: float = 0.05  # first pause between attempts; doubles up to backoff_max
    backoff_max: float = 1.0
    discovery_timeout: float = 1.0
    # Give up once every endpoint has refused connections for this long (None: retry until
    # the timeout, e.g. through a restart of the whole cluster). The CLI uses 1 s.
    refused_grace: float | None = None


@dataclass(slots=True)
class _Tries:
    """The attempts of one request so far."""

    started: float
    deadline: float
    attempt: int = 0
    maybe_applied: bool = False  # some attempt may have reached a server without an answer
    last: RaftkvError | None = None

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    headers: Mapping[str, str]
    body: bytes
    endpoint: str
    request: str = ""  # "GET /v1/status", for messages

    def json(self) -> Any:
        """The JSON body; WrongEndpoint when it is not JSON (a raftkv node always sends it)."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise self.not_raftkv() from None

    def not_raftkv(self, what: str = "", lacks: str = "raftkv's JSON") -> WrongEndpoint:
        ctype = self.headers.get("Content-Type", "")
        err = wrong_endpoint(self.endpoint, self.request, self.status, ctype, self.body, lacks)
        if what:
            err.args = (f"{what}: {err}",)
        return err


class EndpointRouter:
    def __init__(
        self,
        endpoints: list[str],
        policy: RetryPolicy,
        http: aiohttp.ClientSession | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.credentials = credentials or Credentials()
        self.auth_headers = self.credentials.headers()  # sent with every request
        self.policy = policy
        self.sessions = SessionKeeper(self._open_session)
        self._http = http
        self._own_http = http is None
        self.leader: str | None = None  # endpoint of the known leader
        self._ids: dict[str, str] = {}  # endpoint -> node id, as learned from /v1/status
        self._next = 0  # round-robin position while no leader is known
        self._last_discovery = -1e9
        self._discovery: asyncio.Task[None] | None = None
        self._rng = random.Random()
        self._refused: dict[str, float] = {}  # endpoint -> since when it refuses connections

    # --- lifecycle ----------------------------------------------------------------------

    def http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = client_session(
                connector=aiohttp.TCPConnector(
                    limit=0, keepalive_timeout=30, ssl=self.credentials.ssl_context() or True
                ),
                auto_decompress=False,
            )
            self._own_http = True
        return self._http

    async def close(self) -> None:
        if self._discovery is not None:
            self._discovery.cancel()
        if self._own_http and self._http is not None:
            await self._http.close()
        self._http = None

    # --- one attempt ----------------------------------------------------------------------

    async def send(
        self,
        endpoint: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float,
    ) -> HttpAnswer:
        """One HTTP exchange; aiohttp errors and TimeoutError propagate."""
        url = URL(endpoint + path, encoded=True)
        if params:
            url = url.update_query(params)
        if self.auth_headers:
            headers = {**self.auth_headers, **(headers or {})}
        try:
            async with self.http().request(
                method,
                url,
                data=body,
                headers=headers,
                # A connect timeout is known not to have sent anything (ConnectionTimeoutError);
                # the total timeout expiring is an unknown outcome.
                timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 2.0)),
                allow_redirects=False,
            ) as resp:
                data = await resp.read()
                answer = HttpAnswer(resp.status, resp.headers, data, endpoint, f"{method} {path}")
        except aiohttp.ClientConnectorError as e:
            if _refused(e):
                self._refused.setdefault(endpoint, time.monotonic())
            else:
                self._refused.pop(endpoint, None)
            raise
        except BaseException:
            self._refused.pop(endpoint, None)
            raise
        self._refused.pop(endpoint, None)
        return answer

    def all_refused(self) -> bool:
        """Every endpoint has refused connections for policy.refused_grace seconds."""
        left = self._refused_left()
        return left is not None and left <= 0

    def _refused_left(self) -> float | None:
        """Seconds until all_refused() (None: some endpoint does not refuse, or no grace)."""
        grace = self.policy.refused_grace
        if grace is None or not all(e in self._refused for e in self.endpoints):
            return None
        return grace - (time.monotonic() - max(self._refused[e] for e in self.endpoints))

    # --- the retry loop -------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        write: bool = False,
        idempotent: bool = True,
        timeout: float | None = None,
    ) -> HttpAnswer:
        """Send until a final answer (2xx or a definite error, raised as RaftkvError) or the
        deadline. write: number it in the client session (one seq for every retry).
        idempotent=False: an attempt with an unknown outcome is not retried (no session
        protects it)."""
        total = self.policy.timeout if timeout is None else timeout
        tries = _Tries(time.monotonic(), time.monotonic() + total)
        if not write:
            return await self._until_final(
                method, path, what, params, body, None, tries, idempotent
            )
        session = await self.sessions.current(max(tries.remaining(), 0.001), what)
        while True:
            seq = session.begin()
            try:
                numbered = (session, seq)
                return await self._until_final(method, path, what, params, body, numbered, tries)
            except SessionExpired as e:
                if tries.maybe_applied:
                    raise SessionExpired(
                        f"{what}: the session expired while an earlier attempt's outcome was "
                        f"unknown; the write may or may not have been applied: read the key to "
                        f"find out ({e})"
                    ) from None
            finally:
                session.finish(seq)
            # Refused, and no attempt before may have applied it: a new session, a new seq.
            session = await self.sessions.renew(session, max(tries.remaining(), 0.001), what)

    async def _until_final(
        self,
        method: str,
        path: str,
        what: str,
        params: Mapping[str, str] | None,
        body: bytes | None,
        numbered: tuple[ClientSession, int] | None,
        tries: _Tries,
        idempotent: bool = True,
    ) -> HttpAnswer:
        """Attempts until a final answer or the deadline; numbered: the write's (session,
        seq). SessionExpired is raised as soon as a server refuses the session."""
        while True:
            remaining = tries.remaining()
            if remaining <= 0 or (tries.attempt > 0 and remaining < MIN_ATTEMPT_S):
                break  # too little time left for an attempt to mean anything
            if self.leader is None:
                await self._maybe_discover(min(remaining, self.policy.discovery_timeout))
            endpoint = self.leader or self._round_robin()
            headers = None if numbered is None else numbered[0].headers(numbered[1])
            retry_after = 0.0
            try:
                answer = await self.send(
                    endpoint,
                    method,
                    path,
                    params=params,
                    body=body,
                    headers=headers,
                    timeout=min(max(tries.remaining(), 0.001), self.policy.attempt_timeout),
                )
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as e:
                tries.last = Unavailable(connect_error(endpoint, e))  # not sent
                self._failed(endpoint)
                if self.all_refused():
                    break
            except (aiohttp.ClientError, TimeoutError) as e:
                tries.maybe_applied = True
                tries.last = Timeout(no_answer(endpoint, e))
                self._failed(endpoint)
                if not idempotent:
                    break
            else:
                if 200 <= answer.status < 300:
                    self._learn_leader(answer)
                    return answer
                if not is_raftkv_error(answer.body):
                    raise answer.not_raftkv(what)
                code, _, _ = parse_error_body(answer.body)
                verdict = classify(answer.status, code)
                err = error_from_response(answer.status, answer.body, endpoint)
                if verdict is AnswerVerdict.FINAL:
                    self._learn_leader(answer)
                    raise err
                tries.last = err
                if verdict is AnswerVerdict.UNKNOWN:
                    tries.maybe_applied = True
                    if not idempotent:
                        break
                self._failed(endpoint)
                self._hint_leader(answer)
                retry_after = _retry_after(answer.headers)
            tries.attempt += 1
            pause = self._pause(tries.attempt, retry_after, tries.deadline)
            left = self._refused_left()
            if left is not None:  # retry when the grace ends, to give up then if still refused
                pause = min(pause, max(left, MIN_ATTEMPT_S))
            await asyncio.sleep(pause)
        unknown = tries.maybe_applied and (numbered is not None or not idempotent)
        raise self._give_up(what, tries.last, unknown, tries.started)

    async def _open_session(self, timeout: float, what: str) -> str:
        """POST /v1/sessions for the write `what`: a new session, opened through the log; its
        client id. A retry after an unknown outcome may open two: the unused one expires like
        any other. Its errors read as the write's (nothing of the write was sent)."""
        answer = await self.request("POST", "/v1/sessions", what=what, timeout=timeout)
        doc = answer.json()
        client_id = doc.get("client_id") if isinstance(doc, dict) else None
        if not isinstance(client_id, str) or not client_id:
            raise ServerError(f"{answer.endpoint} opened a session without a client_id: {doc}")
        return client_id

    def _give_up(
        self, what: str, last: RaftkvError | None, unknown: bool, started: float
    ) -> RaftkvError:
        elapsed = time.monotonic() - started
        if unknown:
            return Timeout(
                f"{what}: no definite answer after {elapsed:.1f}s ({last}); the write may "
                "have committed: read the key to find out"
            )
        if last is None:
            return Timeout(f"{what}: no answer within {elapsed:.1f}s")
        if isinstance(last, Unavailable) and self.all_refused():
            every = "" if len(self.endpoints) == 1 else "every endpoint: "
            last.args = (
                f"{what}: connection refused to {every}{', '.join(self.endpoints)}. "
                "Is the cluster running? (raftkv cluster up)",
            )
        elif isinstance(last, Unavailable) and self.leader is None:
            last.args = (
                f"{what}: cannot reach any endpoint ({', '.join(self.endpoints)}) within "
                f"{elapsed:.1f}s: {last}. Is the cluster running? (raftkv cluster up)",
            )
        else:
            last.args = (f"{what}: gave up after {elapsed:.1f}s: {last}",)
        return last

    def _pause(self, attempt: int, retry_after: float, deadline: float) -> float:
        p = self.policy
        pause = min(p.backoff_max, p.backoff_base * 2.0 ** min(attempt - 1, 20))
        pause *= self._rng.uniform(0.5, 1.0)  # jitter: concurrent clients do not retry in step
        if retry_after > 0:
            pause = max(pause, min(retry_after, p.backoff_max))
        return max(0.0, min(pause, deadline - time.monotonic()))  # never sleep past the deadline

    # --- where to send ------------------------------------------------------------------

    def _round_robin(self) -> str:
        return self.endpoints[self._next % len(self.endpoints)]

    def _failed(self, endpoint: str) -> None:
        """endpoint could not serve the request: forget it as leader, try the next one."""
        if self.leader == endpoint:
            self.leader = None
        if self.endpoints[self._next % len(self.endpoints)] == endpoint:
            self._next += 1

    def _endpoint_of(self, node_id: str) -> str | None:
        for endpoint, known in self._ids.items():
            if known == node_id:
                return endpoint
        return None

    def _learn_leader(self, answer: HttpAnswer) -> None:
        """A forwarded answer names the leader: go to it directly next time."""
        leader_id = answer.headers.get(LEADER_HEADER)
        if leader_id:
            self.leader = self._endpoint_of(leader_id) or self.leader

    def _hint_leader(self, answer: HttpAnswer) -> None:
        leader_id = answer.headers.get(LEADER_HEADER)
        if leader_id:
            endpoint = self._endpoint_of(leader_id)
            if endpoint is not None and endpoint != answer.endpoint:
                self.leader = endpoint

    # --- leader discovery ------------------------------------------------------------------

    async def _maybe_discover(self, timeout: float) -> None:
        if self._discovery is None or self._discovery.done():
            if time.monotonic() - self._last_discovery < DISCOVERY_INTERVAL_S:
                return
            self._last_discovery = time.monotonic()
            self._discovery = asyncio.ensure_future(self.discover(timeout))
        await asyncio.shield(self._discovery)

    async def discover(self, timeout: float) -> None:
        """Ask every endpoint for its status; stop at the first that says it is the leader."""
        tasks = {asyncio.ensure_future(self.status_of(e, timeout)): e for e in self.endpoints}
        claimed: str | None = None  # a leader id some follower reported
        try:
            pending = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.exception() is not None:
                        continue
                    status = task.result()
                    if status.role == "leader":
                        self.leader = tasks[task]
                        return
                    claimed = status.leader or claimed
            if claimed is not None:
                self.leader = self._endpoint_of(claimed)
        finally:
            for task in tasks:
                task.cancel()

    async def status_of(self, endpoint: str, timeout: float) -> ServerStatus:
        """GET /v1/status of one endpoint, no retries; remembers the endpoint's node id."""
        answer = await self.send(endpoint, "GET", "/v1/status", timeout=timeout)
        if answer.status != 200:
            if not is_raftkv_error(answer.body):
                raise answer.not_raftkv()
            raise error_from_response(answer.status, answer.body, endpoint)
        status = ServerStatus.from_json(answer.json())
        self._ids[endpoint] = status.id
        return status


def connect_error(endpoint: str, e: BaseException) -> str:
    """Why endpoint could not be reached, in words (not aiohttp's "ssl:default [...]")."""
    if isinstance(e, aiohttp.ClientConnectorError) and _refused(e):
        return f"connection refused to {endpoint}"
    if isinstance(e, aiohttp.ConnectionTimeoutError):
        return f"cannot connect to {endpoint}: timed out"
    return f"cannot connect to {endpoint}: {_reason(e)}"


def no_answer(endpoint: str, e: BaseException) -> str:
    """An attempt that may have reached endpoint but got no answer."""
    return f"no answer from {endpoint}: {_reason(e)}"


def _refused(e: aiohttp.ClientConnectorError) -> bool:
    return isinstance(e.os_error, ConnectionRefusedError) or e.os_error.errno == errno.ECONNREFUSED


def _reason(e: BaseException) -> str:
    if isinstance(e, aiohttp.ClientConnectorError):
        os_error = e.os_error
        if os_error.errno:
            return os.strerror(os_error.errno).lower()
        return os_error.strerror or str(os_error) or type(os_error).__name__
    if isinstance(e, TimeoutError):
        return "timed out"
    return str(e) or type(e).__name__


def _retry_after(headers: Mapping[str, str]) -> float:
    try:
        return max(0.0, float(headers.get("Retry-After", "0")))
    except ValueError:
        return 0.0
