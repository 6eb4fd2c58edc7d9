"""Follow every node's `GET /v1/events` and feed the broker, reconnecting when a node goes
away (crashed, restarting) and comes back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import aiohttp

from raftkv.client.sse import SseParser
from raftkv.demo.broker import EventBroker

RETRY_MIN_S = 0.2
RETRY_MAX_S = 1.0
CONNECT_TIMEOUT_S = 2.0


class NodeStreams:
    """One reconnecting SSE reader per node; start() them, close() them."""

    def __init__(
        self,
        broker: EventBroker,
        urls: Callable[[], dict[str, str]],
        session: aiohttp.ClientSession,
    ) -> None:
        self._broker = broker
        self._urls = urls  # node id -> base URL (read at each connect)
        self._session = session
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for node_id in self._urls():
            self._broker.connected.setdefault(node_id, False)
            self._tasks.append(asyncio.create_task(self._follow(node_id), name=f"sse-{node_id}"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _follow(self, node_id: str) -> None:
        delay = RETRY_MIN_S
        while True:
            try:
                await self._read(node_id)
                delay = RETRY_MIN_S  # it was up: retry fast, it is probably restarting
            except (aiohttp.ClientError, OSError, TimeoutError):
                delay = min(RETRY_MAX_S, delay * 2)
            self._broker.stream_status(node_id, False)
            await asyncio.sleep(delay)

    async def _read(self, node_id: str) -> None:
        url = self._urls()[node_id] + "/v1/events"
        timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT_S, sock_read=None)
        async with self._session.get(url, timeout=timeout) as resp:
            if resp.status != 200:
                raise aiohttp.ClientResponseError(
                    resp.request_info, resp.history, status=resp.status
                )
            self._broker.stream_status(node_id, True)
            parser = SseParser()
            async for raw in resp.content:
                ev = parser.feed_line(raw.decode("utf-8", "replace").rstrip("\r\n"))
                if ev is not None:
                    self._broker.node_event(ev.data)
