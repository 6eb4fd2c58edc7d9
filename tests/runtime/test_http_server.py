"""The node's one HTTP server (runtime/http_server.py) on the wire: framing, pipelining,
connection handling, refusals before the body, and hostile input. Raw bytes over TCP to a
real node; the answers' contract (routes, JSON errors) is checked in the other tests too."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from raftkv.errors import Timeout
from raftkv.runtime import http_server
from raftkv.runtime.http_types import Handler, NoRoute, Pending, Request, Response, Router
from raftkv.security.config import SecurityConfig

from .cluster import LocalCluster, eventually, run_async

MAX_VALUE = 1024
MAX_KEY = 64


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def error(self) -> str:
        assert self.headers["content-type"] == "application/json", self
        doc = json.loads(self.body)
        assert isinstance(doc["message"], str)
        return str(doc["error"])


async def read_answer(reader: asyncio.StreamReader, *, no_body: bool = False) -> Answer:
    """One response (to a HEAD request: without a body); 1xx interim answers are skipped."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        assert lines[0].startswith(b"HTTP/1.1 "), lines[0]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.decode().lower()] = value.strip().decode("latin-1")
        status = int(lines[0].split(b" ")[1])
        if 100 <= status < 200:
            continue
        if no_body:
            body = b""
        elif "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        else:
            raise AssertionError(f"an answer without Content-Length: {headers}")
        return Answer(status, headers, body)


async def exchange(
    port: int, data: bytes, answers: int = 1, *, eof: bool = False
) -> tuple[list[Answer], bool]:
    """Send data on a new connection, read `answers` answers, then whether the server closed
    the connection (EOF within a short wait)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if eof:
            writer.write_eof()
        head = data.startswith(b"HEAD")
        out = [await asyncio.wait_for(read_answer(reader, no_body=head), 5) for _ in range(answers)]
        try:
            closed = await asyncio.wait_for(reader.read(1), 0.3 if not eof else 3) == b""
        except TimeoutError:
            closed = False
        except ConnectionError:
            closed = True
        return out, closed
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def req(
    method: str, target: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: test"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + (body or b"")


def one_node(tmp_path: Path) -> LocalCluster:
    return LocalCluster(tmp_path, 1, max_value_size=MAX_VALUE, max_key_size=MAX_KEY, fsync=False)


def port_of(c: LocalCluster) -> int:
    return c.settings["n1"].http[1]


# --- routing without a node ---------------------------------------------------------------


def test_the_router_matches_exact_paths_patterns_and_methods() -> None:
    r = Router(100)

    def handler(name: str) -> Handler:
        return lambda _: Response(name.encode())

    r.add("GET", "/v1/status", handler("status"))
    r.add("PUT", "/v1/kv/{key:.+}", handler("put"), max_body=7, what="value")
    r.add("GET", "/v1/kv/{key:.+}", handler("get"))
    r.add("POST", "/v1/members/{id}/promote", handler("promote"))
    r.add("DELETE", "/v1/members/{id}", handler("remove"))
    route, params = r.match("PUT", "/v1/kv/a/b/c")
    assert params == {"key": "a/b/c"} and (route.max_body, route.what) == (7, "value")
    assert r.match("GET", "/v1/kv/x")[0].max_body == 100
    assert r.match("POST", "/v1/members/n4/promote")[1] == {"id": "n4"}
    assert r.match("DELETE", "/v1/members/n4")[1] == {"id": "n4"}
    for method, path, allowed in (
        ("GET", "/v1/kv/", ()),  # the key is not empty
        ("GET", "/v1/members/a/b", ()),  # {id} is one segment
        ("HEAD", "/v1/status", ("GET",)),
        ("POST", "/v1/kv/k", ("GET", "PUT")),
    ):
        with pytest.raises(NoRoute) as caught:
            r.match(method, path)
        assert caught.value.allowed == allowed


# --- framing ------------------------------------------------------------------------------


def test_framing_a_client_may_use(tmp_path: Path) -> None:
    async def main() -> None:
        async with one_node(tmp_path) as c:
            await c.leader()
            port = port_of(c)
            chunked = (
                b"PUT /v1/kv/chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
            )
            (a,), closed = await exchange(port, chunked)
            assert a.status == 200 and not closed
            assert (await c.get("n1", "chunked"))[1] == b"abcde"
            # HTTP/1.0: answered, then closed unless it asked to be kept alive
            (a,), closed = await exchange(port, b"GET /v1/kv/chunked HTTP/1.0\r\n\r\n")
            assert (a.status, a.body, closed) == (200, b"abcde", True)
            keep = b"GET /v1/kv/chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
            (a,), closed = await exchange(port, keep)
            assert a.headers["connection"] == "keep-alive" and not closed
            # percent-encoding is decoded in the key; the query as in a form
            (a,), _ = await exchange(port, req("PUT", "/v1/kv/p%2Fq%20r", b"pct"))
            assert a.status == 200
            assert (await c.get("n1", "p/q r"))[1] == b"pct"
            (a,), _ = await exchange(port, req("GET", "/v1/kv/p%2Fq%20r?consistency=st%61le"))
            assert a.body == b"pct"
            # absolute form
            (a,), _ = await exchange(port, req("GET", "http://test/v1/kv/chunked"))
            assert a.body == b"abcde"
            # Expect: 100-continue gets the interim answer, then the real one
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                req("PUT", "/v1/kv/e", None, {"Content-Length": "2", "Expect": "100-continue"})
            )
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert interim.startswith(b"HTTP/1.1 100 Continue")
            writer.write(b"ok")
            assert (await asyncio.wait_for(read_answer(reader), 5)).status == 200
            writer.close()
            assert (await c.get("n1", "e"))[1] == b"ok"

    run_async(main)


def test_refusals_and_errors_are_json(tmp_path: Path) -> None:
    async def main() -> None:
        async with one_node(tmp_path) as c:
            await c.leader()
            port = port_of(c)
            cases: list[tuple[bytes, int, str, bool]] = [  # request, status, error, closed
                (req("GET", "/nope"), 404, "not_found", False),
                # invalid UTF-8 inside a JSON string (was a 500 on the old stacks too)
                (req("POST", "/v1/txn", b'{"compare": "\xab"}'), 400, "bad_request", False),
                (req("GET", "/v1/kv/"), 404, "not_found", False),
                (req("POST", "/v1/kv/a", b"x"), 405, "method_not_allowed", True),
                (req("GET", "/v1/kv/a?consistency=bogus"), 400, "bad_request", False),
                (req("PUT", "/v1/kv/" + "k" * (MAX_KEY + 1), b"x"), 413, "too_large", False),
                (req("PUT", "/v1/kv/s", b"x", {"X-Raftkv-Client": "c"}), 400, "bad_request", False),
                (b"GET /v1/kv/a HTTP/1.1\r\n\r\n", 400, "bad_request", False),  # no Host
                (b"GET /v1/kv/a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "bad_request", False),
                (b"GET /v1/kv/%ff HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bad_request", False),
                (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bad_request", False),
                (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400, "bad_request", True),
                (b"GET /v1/kv/a HTTP/1.1\r\nBad Name: b\r\n\r\n", 400, "bad_request", True),
                (b"G\x00T / HTTP/1.1\r\n\r\n", 400, "bad_request", True),
                (b"PUT /v1/kv/a HTTP/1.1\r\nContent-Length: +1\r\n\r\nx", 400, "bad_request", True),
                (
                    b"GET /v1/kv/a HTTP/1.1\r\nHost: a\r\nX-Big: " + b"x" * 70000 + b"\r\n\r\n",
                    431,
                    "request_header_fields_too_large",
                    True,
                ),
            ]
            for data, status, error, closed in cases:
                (a,), was_closed = await exchange(port, data)
                assert (a.status, a.error(), was_closed) == (status, error, closed), data[:80]
            (a,), closed = await exchange(port, req("GET", "/v1/kv/" + "k" * 9000))
            assert (a.status, a.error(), closed) == (431, "request_header_fields_too_large", True)
            many = "".join(f"X-H{i}: {'v' * 100}\r\n" for i in range(700)).encode()
            (a,), closed = await exchange(port, b"GET /v1/status HTTP/1.1\r\nHost: a\r\n" + many)
            assert (a.status, closed) == (431, True)  # no end of head in 64 KiB: refused at once
            (a,), _ = await exchange(port, req("HEAD", "/v1/status"))
            assert a.status == 405 and a.headers["allow"] == "GET" and a.body == b""
            # A value over the limit is refused from its Content-Length, before it is sent.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"PUT /v1/kv/big HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\n\r\n")
            a = await asyncio.wait_for(read_answer(reader), 5)
            assert (a.status, a.error()) == (413, "too_large") and b"5000" in a.body
            assert a.headers["connection"] == "close"
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            # and a chunked one once it grows past it
            chunk = b"%x\r\n%s\r\n" % (600, b"v" * 600)
            head = b"PUT /v1/kv/big HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
            (a,), closed = await exchange(port, head + chunk + chunk)
            assert (a.status, a.error(), closed) == (413, "too_large", True)
            assert (await c.get("n1", "big"))[0] == 404

    run_async(main)


# --- connections --------------------------------------------------------------------------


def test_pipelined_requests_are_answered_in_order(tmp_path: Path) -> None:
    async def main() -> None:
        async with one_node(tmp_path) as c:
            await c.leader()
            port = port_of(c)
            burst = b"".join(
                (
                    req("PUT", "/v1/kv/p", b"1"),
                    req("GET", "/v1/kv/p"),
                    req("DELETE", "/v1/kv/p"),
                    req("GET", "/v1/kv/p?consistency=stale"),
                    req("GET", "/nope"),
                    req("PUT", "/v1/kv/p", b"2"),
                    req("GET", "/v1/status"),
                    req("GET", "/v1/kv/p?consistency=lease"),
                )
            )
            answers, closed = await exchange(port, burst, 8)
            assert [a.status for a in answers] == [200, 200, 200, 404, 404, 200, 200, 200]
            assert (answers[1].body, answers[7].body, closed) == (b"1", b"2", False)
            # split at every few bytes: the parser waits for the rest
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            data = req("PUT", "/v1/kv/split", b"abcdef") + req("GET", "/v1/kv/split")
            for i in range(0, len(data), 7):
                writer.write(data[i : i + 7])
                await writer.drain()
                await asyncio.sleep(0.001)
            got = [await asyncio.wait_for(read_answer(reader), 5) for _ in range(2)]
            assert [a.status for a in got] == [200, 200] and got[1].body == b"abcdef"
            writer.close()

    run_async(main)


def test_a_long_pipeline_pauses_reading_and_loses_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        async with one_node(tmp_path) as c:
            await c.leader()
            port = port_of(c)
            assert (await c.put("n1", "x", b"v"))[0] == 200
            n = 10 * http_server.MAX_QUEUED
            burst = b"".join(req("GET", "/v1/kv/x?consistency=lease") for _ in range(n))
            answers, closed = await exchange(port, burst, n)
            assert all(a.status == 200 and a.body == b"v" for a in answers) and not closed

    run_async(main)


def test_connection_close_and_half_close(tmp_path: Path) -> None:
    async def main() -> None:
        async with one_node(tmp_path) as c:
            await c.leader()
            port = port_of(c)
            data = req("PUT", "/v1/kv/c", b"1", {"Connection": "close"})
            (a,), closed = await exchange(port, data)
            assert a.status == 200 and a.headers["connection"] == "close" and closed
            # bytes after "Connection: close" are not served: the answer, then the close
            (a,), closed = await exchange(port, data + req("PUT", "/v1/kv/c", b"2"))
            assert a.status == 200 and closed
            assert (await c.get("n1", "c"))[1] == b"1"
            (a,), closed = await exchange(
                port, req("GET", "/v1/kv/c", None, {"Connection": "keep-alive, Close"})
            )
            assert a.body == b"1" and closed
            # the client half-closes after its requests: every one is answered, then EOF
            data = req("PUT", "/v1/kv/c", b"3") + req("GET", "/v1/kv/c")
            answers, closed = await exchange(port, data, 2, eof=True)
            assert answers[1].body == b"3" and closed
            # half-close in the middle of a request: closed without an answer
            for partial in (
                b"GET /v1/kv/c HTTP/1.1\r\nHost: x",
                req("PUT", "/v1/kv/c", b"12")[:-1],
            ):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(partial)
                writer.write_eof()
                assert await asyncio.wait_for(reader.read(), 5) == b""
                writer.close()

    run_async(main)


def test_idle_connections_close_at_shutdown(tmp_path: Path) -> None:
    async def main() -> None:
        async with one_node(tmp_path) as c:
            await c.leader()
            reader, writer = await asyncio.open_connection("127.0.0.1", port_of(c))
            writer.write(req("PUT", "/v1/kv/k", b"v"))
            assert (await asyncio.wait_for(read_answer(reader), 5)).status == 200
            loop = asyncio.get_running_loop()
            started = loop.time()
            await c.stop("n1")
            assert await asyncio.wait_for(reader.read(), 5) == b""
            assert loop.time() - started < http_server.SHUTDOWN_TIMEOUT_S
            writer.close()

    run_async(main)


# --- hostile input ------------------------------------------------------------------------


def _mutations(rng: random.Random, n: int) -> list[bytes]:
    seeds = [
        req("PUT", "/v1/kv/h", b"value", {"X-Raftkv-Client": "c", "X-Raftkv-Seq": "1"}),
        req("GET", "/v1/kv/h?consistency=lease"),
        req("GET", "/v1/kv/h"),
        req("POST", "/v1/txn", b'{"compare":[],"success":[],"failure":[]}'),
    ]
    alphabet = b"\r\n :%/?#\x00\xff\t,=0123456789-aZ"
    out = list(seeds)
    for _ in range(n):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(data) + 1)
            match rng.randrange(4):
                case 0:
                    del data[pos : pos + rng.randint(1, 8)]
                case 1:
                    data[pos:pos] = bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 4)))
                case 2:
                    if pos < len(data):
                        data[pos] = rng.randrange(256)
                case _:
                    data[pos:pos] = rng.choice(seeds)
        out.append(bytes(data))
    out += [rng.randbytes(rng.randint(1, 300)) for _ in range(20)]
    out += [b"\r\n" * 5000, b"GET " + b"/v1/kv/" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n"]
    out += [b"PUT /v1/kv/h HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"]
    out += [req("PUT", "/v1/kv/h", b"x", {"X-Raftkv-Client": "c", "X-Raftkv-Seq": "9" * 30})]
    return out


def test_hostile_input_never_crashes_the_node(tmp_path: Path) -> None:
    async def main() -> None:
        async with one_node(tmp_path) as c:
            await c.leader()
            port = port_of(c)
            statuses: set[int] = set()

            async def send(data: bytes) -> None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                try:
                    writer.write(data)
                    writer.write_eof()
                    raw = await asyncio.wait_for(reader.read(), 10)
                    for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", raw):
                        statuses.add(int(status))
                except ConnectionError:
                    pass
                finally:
                    writer.close()

            rng = random.Random(7)
            cases = _mutations(rng, 300)
            for i in range(0, len(cases), 8):
                await asyncio.gather(*(send(d) for d in cases[i : i + 8]))
            # clients that vanish with a request in flight
            for _ in range(20):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(req("PUT", "/v1/kv/gone", b"v") + req("GET", "/v1/kv/gone"))
                writer.transport.abort()
            assert statuses <= {200, 400, 404, 405, 410, 413, 431}, statuses
            assert statuses & {200} and statuses & {400}

            async def still_serving() -> bool:
                status, _ = await c.put("n1", "after", b"ok")
                return status == 200

            await eventually(still_serving, what="the node to keep serving")
            assert c.running("n1")
            assert (await c.get("n1", "after"))[:2] == (200, b"ok")

    run_async(main, timeout=120)


class _Wire:
    """A transport that keeps what the server writes (the deadline tests run in-process)."""

    def __init__(self) -> None:
        self.answers: list[tuple[float, bytes]] = []

    def write(self, data: bytes) -> None:
        self.answers.append((asyncio.get_running_loop().time(), data))

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    def get_protocol(self) -> None:
        return None

    def close(self) -> None:
        pass


def test_each_pending_answer_keeps_its_own_deadline() -> None:
    """One timer per connection watches the deadlines of its Pendings: a shorter deadline after
    a longer one is still kept, and a longer one after a shorter one is not cut short."""
    waiting: list[Pending] = []

    def slow(request: Request) -> Pending:
        p = Pending(
            lambda result: Response(b'{"ok":true}'),
            timeout=float(request.params["seconds"]),
            on_timeout=lambda: Timeout("too late"),
            otherwise=lambda error: None,
        )
        waiting.append(p)
        return p

    router = Router(100)
    router.add("GET", "/wait/{seconds}", slow)
    app = http_server.HttpApp(router, SecurityConfig(), None)  # type: ignore[arg-type]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        proto = http_server.HttpProtocol(app, set())
        wire = _Wire()
        proto.connection_made(wire)  # type: ignore[arg-type]

        def ask(seconds: float) -> float:
            proto.data_received(f"GET /wait/{seconds} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            return loop.time()

        # 1. a long deadline, answered at once; then a short one, never answered
        ask(30.0)
        waiting[-1].set_result(1)
        asked = ask(0.1)
        while len(wire.answers) < 2:
            await asyncio.sleep(0.01)
        (_, first), (at, second) = wire.answers
        assert first.startswith(b"HTTP/1.1 200 ")
        assert second.startswith(b"HTTP/1.1 504 ") and b"too late" in second
        assert 0.1 <= at - asked < 5.0  # not at the first request's 30 s
        # 2. a short deadline, answered at once; then a longer one, never answered
        ask(0.1)
        waiting[-1].set_result(1)
        asked = ask(0.6)
        while len(wire.answers) < 4:
            await asyncio.sleep(0.01)
        at, fourth = wire.answers[3]
        assert fourth.startswith(b"HTTP/1.1 504 ")
        assert at - asked >= 0.6  # the timer due for the first one waited on
        assert waiting[-1].done()  # the driver will skip it
        proto.connection_lost(None)

    run_async(main)
