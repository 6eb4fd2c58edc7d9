"""An in-process TLS cluster for the security tests: certificates from `certs.init_dir`, nodes
run by `serve()` in one event loop on free ports, HTTPS URLs, and a token table."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from raftkv.devcluster.ports import free_ports
from raftkv.runtime.server import serve
from raftkv.runtime.settings import NodeSettings, PeerAddress
from raftkv.security import certs
from raftkv.security.auth import TokenTable
from raftkv.security.config import SecurityConfig
from raftkv.security.tls import TlsFiles, http_client_context

T = TypeVar("T")


def run_async(main: Callable[[], Coroutine[Any, Any, T]], timeout: float = 60.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(main(), timeout)

    return asyncio.run(bounded())


async def eventually(
    check: Callable[[], Awaitable[T | None]], timeout: float = 10.0, what: str = "condition"
) -> T:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = await check()
            if result is not None and result is not False:
                return result
        except (aiohttp.ClientError, OSError, AssertionError) as e:
            last = e
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


TOKENS = {
    "admin": "admin-token-0123456789abcdef",
    "write": "write-token-0123456789abcdef",
    "read": "read-token-0123456789abcdef0",
}


def make_certs(directory: Path, nodes: list[str]) -> Path:
    certs.init_dir(
        directory,
        nodes,
        clients={"admin": "admin", "reader": "read", "writer": "write"},
        tokens=False,
    )
    (directory / "tokens.txt").write_text(
        certs.token_file_text([(t, role, f"{role}-user") for role, t in TOKENS.items()])
    )
    return directory


def client_ssl(directory: Path, client: str | None = None) -> ssl.SSLContext:
    if client is None:
        return http_client_context(directory / "ca.pem")
    return http_client_context(
        directory / "ca.pem",
        directory / f"client-{client}.pem",
        directory / f"client-{client}.key",
    )


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


class SecureCluster:
    def __init__(self, root: Path, n: int = 3, *, tls: bool = True, **overrides: Any) -> None:
        self.ids = [f"n{i + 1}" for i in range(n)]
        self.certs = make_certs(root / "certs", self.ids)
        ports = free_ports(2 * n)
        scheme = "https" if tls else "http"
        peers = {
            nid: PeerAddress("127.0.0.1", ports[2 * i], f"{scheme}://127.0.0.1:{ports[2 * i + 1]}")
            for i, nid in enumerate(self.ids)
        }
        sec_overrides = overrides.pop("security", {})
        defaults: dict[str, Any] = {"tick_ms": 25.0, "request_timeout_s": 3.0, "fsync": False}
        defaults.update(overrides)
        tokens = TokenTable.load(self.certs / "tokens.txt")
        self.settings = {
            nid: NodeSettings(
                node_id=nid,
                data_dir=root / nid,
                listen=peers[nid].raft,
                http=("127.0.0.1", ports[2 * i + 1]),
                peers=peers,
                security=SecurityConfig(
                    tls=TlsFiles.from_dir(self.certs, nid) if tls else None,
                    tokens=tokens,
                    **sec_overrides,
                ),
                **defaults,
            )
            for i, nid in enumerate(self.ids)
        }
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stops: dict[str, asyncio.Event] = {}
        self.http: aiohttp.ClientSession | None = None
        self.tls = tls

    def url(self, nid: str, path: str = "") -> str:
        return self.settings[nid].http_url + path

    def port(self, nid: str) -> int:
        return self.settings[nid].http[1]

    def raft_port(self, nid: str) -> int:
        return self.settings[nid].listen[1]

    @property
    def client(self) -> aiohttp.ClientSession:
        assert self.http is not None
        return self.http

    async def __aenter__(self) -> SecureCluster:
        ssl_ctx: ssl.SSLContext | bool = client_ssl(self.certs) if self.tls else True
        self.http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=10),
            connector=aiohttp.TCPConnector(ssl=ssl_ctx),
        )
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
                task.result()
            assert time.monotonic() < deadline, f"{nid} did not start"
            await asyncio.sleep(0.01)

    async def stop(self, nid: str) -> None:
        task = self._tasks.pop(nid)
        self._stops.pop(nid).set()
        await task

    def running(self, nid: str) -> bool:
        return nid in self._tasks and not self._tasks[nid].done()

    async def status(self, nid: str) -> dict[str, Any]:
        async with self.client.get(self.url(nid, "/v1/status"), headers=bearer("read")) as r:
            assert r.status == 200, await r.text()
            doc: dict[str, Any] = await r.json()
            return doc

    async def leader(self, timeout: float = 10.0, among: list[str] | None = None) -> str:
        nodes = among or [nid for nid in self.ids if self.running(nid)]

        async def agreed() -> str | None:
            docs = [await self.status(nid) for nid in nodes]
            leaders = {d["leader"] for d in docs}
            if len(leaders) == 1 and None not in leaders:
                return str(leaders.pop())
            return None

        return await eventually(agreed, timeout, "an agreed leader")

    async def request(
        self,
        method: str,
        nid: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        ssl_ctx: ssl.SSLContext | None = None,
    ) -> tuple[int, bytes, dict[str, str]]:
        async with self.client.request(
            method, self.url(nid, path), data=body, headers=headers, ssl=ssl_ctx or True
        ) as r:
            return r.status, await r.read(), dict(r.headers)
