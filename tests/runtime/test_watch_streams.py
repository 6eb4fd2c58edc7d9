"""Watch streams: several watches on one stream, the stream budget (--max-streams), and a
stream whose client stopped reading gives its slot back (issue #15, item 4)."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import aiohttp

from raftkv.client import AsyncClient
from raftkv.security.config import SecurityConfig

from .cluster import LocalCluster, eventually, run_async


async def _events(resp: aiohttp.ClientResponse, n: int) -> list[tuple[int, str, int]]:
    """(watch, key, SSE id) of the next n events on resp."""
    out: list[tuple[int, str, int]] = []
    event_id = 0
    while len(out) < n:
        line = (await asyncio.wait_for(resp.content.readline(), 5)).decode().rstrip("\n")
        if line.startswith("id: "):
            event_id = int(line[4:])
        elif line.startswith("data: "):
            doc = json.loads(line[6:])
            assert doc["revision"] == event_id
            out.append((doc["watch"], doc["kv"]["key"], event_id))
    return out


def test_several_watches_share_one_stream(tmp_path: Path) -> None:
    async def main() -> None:
        async with LocalCluster(tmp_path, 1, fsync=False) as c:
            await c.leader()
            url = c.url("n1", "/v1/watch?prefix=a&prefix=b&prefix=ab")
            async with c.client.get(url) as resp:
                assert resp.status == 200
                for key in ("a1", "b1", "ab1", "c1", "b2"):
                    assert (await c.put("n1", key, b"v"))[0] == 200
                got = await _events(resp, 5)
            # Each event once per watch it matches, tagged; in revision, then watch order.
            assert got == [(0, "a1", 1), (1, "b1", 2), (0, "ab1", 3), (2, "ab1", 3), (1, "b2", 5)]
            # One from_revision replays every watch of the stream.
            url = c.url("n1", "/v1/watch?prefix=ab&prefix=a&from_revision=1")
            async with c.client.get(url) as resp:
                got = await _events(resp, 3)
            assert got == [(1, "a1", 1), (0, "ab1", 3), (1, "ab1", 3)]
            for query, needle in (
                ("prefix=a&from_revision=1&from_revision=2", "from_revision is given once"),
                ("&".join(["prefix=p"] * 65), "at most 64 watches"),
            ):
                async with c.client.get(c.url("n1", "/v1/watch?" + query)) as resp:
                    doc = await resp.json()
                    assert resp.status == 400 and needle in doc["message"], doc
            # The Python client: a list of prefixes, events tagged with the watch.
            async with AsyncClient(c.url("n1")) as client:
                seen: list[tuple[int, str]] = []
                async for ev in client.watch(["b", "a"], from_revision=1):
                    seen.append((ev.watch, ev.key))
                    if len(seen) == 4:
                        break
            assert seen == [(1, "a1"), (0, "b1"), (1, "ab1"), (0, "b2")]

    run_async(main)


async def _open(c: LocalCluster, path: str) -> tuple[aiohttp.ClientResponse, Any]:
    resp = await c.client.get(c.url("n1", path))
    if resp.status != 200:
        doc = await resp.json()
        resp.release()
        return resp, doc
    return resp, None


def test_streams_have_their_own_budget(tmp_path: Path) -> None:
    async def main() -> None:
        sec = SecurityConfig(max_streams=2)
        async with LocalCluster(tmp_path, 1, fsync=False, security=sec) as c:
            await c.leader()
            watch, _ = await _open(c, "/v1/watch?prefix=x")
            events, _ = await _open(c, "/v1/events")
            assert watch.status == events.status == 200
            refused, doc = await _open(c, "/v1/watch?prefix=y")
            assert refused.status == 503 and doc["error"] == "too_many_streams", doc
            assert "at most 2 SSE streams" in doc["message"] and "--max-streams" in doc["message"]
            assert refused.headers["Retry-After"] == "1"
            # Ordinary requests are not affected.
            assert (await c.put("n1", "x1", b"v"))[0] == 200
            async with c.client.get(c.url("n1", "/metrics")) as r:
                text = await r.text()
            assert 'raftkv_http_connections{budget="stream"} 2.0' in text
            watch.close()  # a stream that ends gives its slot back

            async def admitted() -> bool:
                resp, _ = await _open(c, "/v1/watch?prefix=z")
                if resp.status == 200:
                    resp.close()
                    return True
                return False

            await eventually(admitted, what="a watch after one closed")
            events.close()

    run_async(main)


def test_a_stream_whose_client_stops_reading_is_closed(tmp_path: Path) -> None:
    async def main() -> None:
        sec = SecurityConfig(max_streams=1, idle_timeout_s=1.0)
        async with LocalCluster(tmp_path, 1, fsync=False, security=sec) as c:
            await c.leader()
            port = c.settings["n1"].http[1]
            # A watcher that reads the answer's head, then nothing more (a small receive
            # buffer, so the server's writes back up soon).
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            await loop.sock_connect(sock, ("127.0.0.1", port))
            await loop.sock_sendall(sock, b"GET /v1/watch?prefix=big HTTP/1.1\r\nHost: t\r\n\r\n")
            head = await asyncio.wait_for(loop.sock_recv(sock, 1024), 5)
            assert head.startswith(b"HTTP/1.1 200"), head
            refused, _ = await _open(c, "/v1/watch?prefix=other")
            assert refused.status == 503  # the only stream slot is taken

            async def freed() -> bool:
                # Big events fill the buffers; the stream then waits on its client, and is
                # closed once it has waited idle_timeout_s.
                assert (await c.put("n1", "big", b"x" * 500_000))[0] == 200
                resp, _ = await _open(c, "/v1/watch?prefix=other")
                if resp.status == 200:
                    resp.close()
                    return True
                return False

            await eventually(freed, timeout=20, what="the stuck stream's slot to be freed")
            sock.close()

    run_async(main)
