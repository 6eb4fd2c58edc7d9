"""A real cluster in one event loop: N `serve` tasks on 127.0.0.1 with free ports and tmp dirs."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any, Self, TypeVar

import aiohttp

from raftkv.devcluster.ports import free_ports
from raftkv.runtime.server import serve
from raftkv.runtime.settings import NodeSettings, PeerAddress

T = TypeVar("T")


def run_async(main: Callable[[], Coroutine[Any, Any, T]], timeout: float = 30.0) -> T:
    """Run an async test body in a fresh event loop, failing it after timeout seconds."""

    async def bounded() -> T:
        return await asyncio.wait_for(main(), timeout)

    return asyncio.run(bounded())


RETRYABLE: tuple[type[Exception], ...] = (aiohttp.ClientError, OSError)


async def eventually(
    check: Callable[[], Awaitable[T | None]],
    timeout: float = 10.0,
    what: str = "condition",
    retry_on: tuple[type[Exception], ...] = RETRYABLE,
) -> T:
    """Poll check() until it returns something other than None (or False); an error in
    retry_on counts as not yet."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = await check()
            if result is not None and result is not False:
                return result
        except retry_on as e:
            last_error = e
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last error: {last_error})")


class LocalCluster:
    # What a status poll may raise while the cluster settles (see leader()).
    retry_errors: tuple[type[Exception], ...] = RETRYABLE
    # Headers on the harness's own status requests.
    status_headers: dict[str, str] = {}

    def __init__(
        self,
        root: Path,
        n: int = 3,
        *,
        scheme: str = "http",
        per_node: Callable[[str], dict[str, Any]] = lambda nid: {},
        **overrides: Any,
    ) -> None:
        """n nodes n1..nN; overrides replace the NodeSettings defaults below for every node,
        per_node(id) adds settings of one node."""
        ids = [f"n{i + 1}" for i in range(n)]
        ports = free_ports(2 * n)
        peers = {
            nid: PeerAddress("127.0.0.1", ports[2 * i], f"{scheme}://127.0.0.1:{ports[2 * i + 1]}")
            for i, nid in enumerate(ids)
        }
        defaults: dict[str, Any] = {
            "tick_ms": 25.0,
            "request_timeout_s": 3.0,
            "allow_fault_injection": True,
        }
        defaults.update(overrides)
        self.settings = {
            nid: NodeSettings(
                node_id=nid,
                data_dir=root / nid,
                listen=peers[nid].raft,
                http=("127.0.0.1", ports[2 * i + 1]),
                peers=peers,
                **defaults,
                **per_node(nid),
            )
            for i, nid in enumerate(ids)
        }
        self.ids = ids
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stops: dict[str, asyncio.Event] = {}
        self.http: aiohttp.ClientSession | None = None

    @classmethod
    def reopen(cls, old: LocalCluster) -> LocalCluster:
        """The same nodes (ids, ports, data dirs) as old, to start again."""
        new = cls.__new__(cls)
        new.settings, new.ids = dict(old.settings), list(old.ids)
        new._tasks, new._stops, new.http = {}, {}, None
        return new

    async def wait_stopped(self, nid: str, timeout: float = 10.0) -> None:
        """Wait for a node to stop on its own; raises what its serve() raised."""
        task = self._tasks.pop(nid)
        self._stops.pop(nid)
        await asyncio.wait_for(task, timeout)

    def url(self, nid: str, path: str = "") -> str:
        return self.settings[nid].http_url + path

    @property
    def client(self) -> aiohttp.ClientSession:
        assert self.http is not None
        return self.http

    def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def __aenter__(self) -> Self:
        self.http = self._session()
        for nid in self.ids:
            await self.start(nid)
        return self

    async def __aexit__(self, *_: object) -> None:
        try:
            await asyncio.gather(*(self.stop(nid) for nid in list(self._tasks)))
        finally:
            if self.http is not None:
                await self.http.close()

    async def start(self, nid: str, **overrides: Any) -> None:
        settings = replace(self.settings[nid], **overrides) if overrides else self.settings[nid]
        ready = settings.data_dir.parent / f"{nid}.ready"
        with contextlib.suppress(FileNotFoundError):
            ready.unlink()
        stop = self._stops[nid] = asyncio.Event()
        task = asyncio.create_task(serve(settings, ready_file=ready, stop=stop))
        self._tasks[nid] = task
        deadline = time.monotonic() + 10
        while not ready.exists():
            if task.done():
                task.result()  # raises the startup error
            assert time.monotonic() < deadline, f"{nid} did not start"
            await asyncio.sleep(0.01)

    async def stop(self, nid: str) -> None:
        task = self._tasks.pop(nid)
        self._stops.pop(nid).set()
        await task

    def running(self, nid: str) -> bool:
        return nid in self._tasks and not self._tasks[nid].done()

    async def status(self, nid: str) -> dict[str, Any]:
        url = self.url(nid, "/v1/status")
        async with self.client.get(url, headers=self.status_headers) as resp:
            assert resp.status == 200, await resp.text()
            doc: dict[str, Any] = await resp.json()
            return doc

    async def leader(self, among: list[str] | None = None, timeout: float = 10.0) -> str:
        """The leader that every node in `among` (default: all running) agrees on."""
        nodes = among or [nid for nid in self.ids if self.running(nid)]

        async def agreed() -> str | None:
            docs = [await self.status(nid) for nid in nodes]
            leaders = {d["leader"] for d in docs}
            if len(leaders) == 1 and None not in leaders:
                leader = leaders.pop()
                if leader in nodes:
                    return str(leader)
            return None

        return await eventually(agreed, timeout, "an agreed leader", self.retry_errors)

    async def put(
        self, nid: str, key: str, value: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        async with self.client.put(
            self.url(nid, f"/v1/kv/{key}"), data=value, headers=headers
        ) as r:
            return r.status, await r.json()

    async def get(
        self, nid: str, key: str, consistency: str = "linearizable"
    ) -> tuple[int, bytes, dict[str, str]]:
        url = self.url(nid, f"/v1/kv/{key}?consistency={consistency}")
        async with self.client.get(url) as r:
            return r.status, await r.read(), dict(r.headers)
