"""Limits on hostile clients: connection counts, idle and slow connections, oversized input."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from raftkv.kv.limits import MAX_TXN_OPS
from raftkv.runtime.conn_guard import OVERFLOW_LIMIT

from .secure import TOKENS, SecureCluster, bearer, run_async

WRITE = f"Authorization: Bearer {TOKENS['write']}\r\n".encode()


async def _read_answer(reader: asyncio.StreamReader, timeout: float = 5.0) -> tuple[int, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    return int(head.split(b" ")[1]), await reader.readexactly(length)


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), seconds) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


def test_connection_limit_idle_and_slow_clients(tmp_path: Path) -> None:
    limits = {"max_http_connections": 4, "idle_timeout_s": 1.0, "read_timeout_s": 1.0}

    async def main() -> None:
        async with SecureCluster(tmp_path, 1, tls=False, security=limits) as c:
            await c.leader()
            port = c.port("n1")
            loop = asyncio.get_running_loop()
            read = f"Authorization: Bearer {TOKENS['read']}\r\n".encode()
            # 5 connections: at most 4 are client connections (the test's own client may
            # hold one); the others are held until their first request, which gets 503
            # too_many_connections, and are then closed.
            conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
            answers = []
            for reader, writer in conns:
                writer.write(b"GET /v1/status HTTP/1.1\r\nHost: t\r\n" + read + b"\r\n")
                status, body = await _read_answer(reader)
                answers.append((status, json.loads(body).get("error")))
            served = answers.count((200, None))
            assert 3 <= served <= 4, answers
            assert answers[served:] == [(503, "too_many_connections")] * (5 - served), answers
            for reader, _ in conns[served:]:
                assert await _closed_within(reader, 1)
            # Over the limit, /healthz is still answered (then the connection closes).
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + read + b"\r\n")
            status, body = await _read_answer(reader)
            assert status == 200 and json.loads(body)["ok"] is True, body
            assert await _closed_within(reader, 1)
            writer.close()
            # Held connections are bounded too: past OVERFLOW_LIMIT, refused at once.
            held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(OVERFLOW_LIMIT)]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            status, body = await _read_answer(reader, 1)
            assert (status, json.loads(body)["error"]) == (503, "too_many_connections")
            assert await _closed_within(reader, 1)
            writer.close()
            # The silent ones are closed after about a second (idle, or no request).
            start = loop.time()
            for r, _ in [*conns[:served], *held]:
                assert await _closed_within(r, 3)
            assert loop.time() - start < 3
            for _, w in [*conns, *held]:
                w.close()

            # A slow client dribbling its request head.
            for first in (b"PUT /v1/kv/slow HTTP/1.1\r\n", b"POST /v1/txn HTTP/1.1\r\n"):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(first)
                start = loop.time()
                closed = False
                for _ in range(30):
                    writer.write(b"X-Slow: 1\r\n")
                    if await _closed_within(reader, 0.2):
                        closed = True
                        break
                assert closed and loop.time() - start < 3, first
                writer.close()

            # A body that never arrives: 408.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"POST /v1/txn HTTP/1.1\r\nHost: t\r\n" + WRITE + b"Content-Length: 100\r\n\r\n{"
            )
            status, body = await _read_answer(reader, 5)
            assert status == 408 and json.loads(body)["error"] == "request_timeout"
            writer.close()

            # A keep-alive client that keeps asking is never cut off.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for i in range(8):
                writer.write(
                    b"PUT /v1/kv/ka HTTP/1.1\r\nHost: t\r\n"
                    + WRITE
                    + b"Content-Length: 1\r\n\r\n"
                    + str(i % 10).encode()
                )
                status, _ = await _read_answer(reader)
                assert status == 200
                await asyncio.sleep(0.3)
            writer.close()

            # A watch stream outlives the idle timeout (its handler is running).
            async with c.client.get(
                c.url("n1", "/v1/watch?prefix=w"), headers=bearer("read")
            ) as resp:
                assert resp.status == 200
                await asyncio.sleep(2.0)
                status, _, _ = await c.request(
                    "PUT", "n1", "/v1/kv/w1", body=b"x", headers=bearer("write")
                )
                assert status == 200
                line = b""
                while b"w1" not in line:
                    line = await asyncio.wait_for(resp.content.readline(), 3)

    run_async(main)


def test_oversized_input_gets_413(tmp_path: Path) -> None:
    async def main() -> None:
        async with SecureCluster(tmp_path, 1, tls=False, max_key_size=64, max_value_size=1024) as c:
            await c.leader()
            w = bearer("write")
            for method, path, body in (
                ("PUT", "/v1/kv/" + "k" * 65, b"v"),
                ("PUT", "/v1/kv/big", b"v" * 1025),
                ("PUT", "/v1/kv/huge", b"v" * (5 * 1024 * 1024)),
            ):
                status, answer, _ = await c.request(method, "n1", path, body=body, headers=w)
                assert status == 413, (path, answer[:200])
                assert json.loads(answer)["error"] == "too_large"
            ops = [{"put": {"key": f"k{i}", "value": "v"}} for i in range(MAX_TXN_OPS + 1)]
            txn = json.dumps({"compare": [], "success": ops, "failure": []}).encode()
            status, answer, _ = await c.request("POST", "n1", "/v1/txn", body=txn, headers=w)
            assert status == 413, answer
            status, answer, _ = await c.request("GET", "n1", "/v1/kv/big", headers=bearer("read"))
            assert status == 404  # nothing oversized was stored

    run_async(main)
