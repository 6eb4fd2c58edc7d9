"""Found by `raftkv chaos` (kill-all while a put was in flight): a put that reached a node
which then died was reported as a definite failure (Unavailable), although it had been
received and, in the chaos run, committed. DESIGN.md: a request that times out never reports
failure for a write that may have committed.

Cause: aiohttp resends an idempotent method (PUT, DELETE; RFC 9112 section 9.3.1) once, on a
new connection, when the first connection breaks; when the node is gone the resend fails to
connect and aiohttp raises ClientConnectorError, which raftkv.client.router classifies as
"never sent". The follower's forwarder (raftkv.runtime.forward) did the same and answered 503
no_leader ("nothing was sent: safe to retry"). These tests play the dying node: it reads one
request, stops listening and drops the connection without answering.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from raftkv.client import AsyncClient, RetryPolicy
from raftkv.errors import ForwardFailed, NotLeader, RaftkvError, Timeout
from raftkv.runtime.faults import NetFaults
from raftkv.runtime.forward import PROPOSE, ForwardClient
from raftkv.runtime.http_errors import from_exception
from raftkv.runtime.settings import PeerAddress

pytestmark = pytest.mark.timeout(30)

_STATUS = json.dumps(
    {"id": "n1", "role": "leader", "term": 1, "leader": "n1", "commit_index": 0}
    | {"applied_index": 0, "last_index": 0, "members": []}
).encode()


def _json_answer(body: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


STATUS_ANSWER = _json_answer(_STATUS)
SESSION_ANSWER = _json_answer(b'{"client_id": "1-abc", "index": 1}')


async def put_to_a_node_that_dies(method: str) -> tuple[list[bytes], RaftkvError | None]:
    received: list[bytes] = []
    server: asyncio.Server | None = None

    async def die_after_reading(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:  # answer status and session requests as the leader; die on the write
            head = await reader.readuntil(b"\r\n\r\n")
            if head.startswith(b"GET /v1/status"):
                writer.write(STATUS_ANSWER)
                continue
            if head.startswith(b"POST /v1/sessions"):  # no body
                writer.write(SESSION_ANSWER)
                continue
            received.append(head)  # the write reached the node
            assert server is not None
            server.close()  # the node is gone: no more connections are accepted
            writer.transport.abort()  # and its connections break without an answer
            return

    server = await asyncio.start_server(die_after_reading, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    policy = RetryPolicy(timeout=1.5, attempt_timeout=1.0, discovery_timeout=0.2)
    error: RaftkvError | None = None
    async with AsyncClient([url], policy=policy) as kv:
        try:
            if method == "PUT":
                await kv.put("k", "v")
            else:
                await kv.delete("k")
        except RaftkvError as e:
            error = e
    return received, error


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_a_write_received_by_a_node_that_then_died_has_an_unknown_outcome(method: str) -> None:
    received, error = asyncio.run(put_to_a_node_that_dies(method))
    assert received and received[0].startswith(method.encode()), "the node got the request"
    assert isinstance(error, Timeout), (
        f"the {method} reached the node, so its outcome is unknown (Timeout), but the client "
        f"reported a definite failure: {type(error).__name__}: {error}"
    )


async def forward_to_a_leader_that_dies() -> tuple[list[bytes], RaftkvError]:
    """A follower forwards a write to its leader, which reads it and dies."""
    received: list[bytes] = []
    server: asyncio.Server | None = None

    async def die(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.readuntil(b"\r\n\r\n"))
        assert server is not None
        server.close()
        writer.transport.abort()

    server = await asyncio.start_server(die, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    leader = PeerAddress("127.0.0.1", 1, url)
    forwarder = ForwardClient("n2", "raftkv", {"n1": leader}.get, NetFaults())
    try:
        await forwarder.call("n1", PROPOSE, b"an encoded command", 2.0, write=True)
    except RaftkvError as e:
        return received, e
    finally:
        await forwarder.close()
    raise AssertionError("the forwarded write got an answer from a leader that died")


def test_a_forwarded_write_the_dead_leader_received_is_not_reported_as_not_sent() -> None:
    received, error = asyncio.run(forward_to_a_leader_that_dies())
    assert received, "the leader got the forwarded request"
    status = from_exception(error).status
    assert isinstance(error, (ForwardFailed, Timeout)) and status in (502, 504), (
        f"the forwarded write reached the leader, so its outcome is unknown (502/504), but the "
        f"follower would answer {status} ({type(error).__name__}: {error}); 503 tells the "
        "client it was not applied"
    )
    assert not isinstance(error, NotLeader)
