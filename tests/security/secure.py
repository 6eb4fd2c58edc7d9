"""An in-process TLS cluster for the security tests: certificates from `certs.init_dir`, nodes
run by `serve()` in one event loop on free ports, HTTPS URLs, and a token table."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from raftkv.security import certs
from raftkv.security.auth import TokenTable
from raftkv.security.config import SecurityConfig
from raftkv.security.tls import TlsFiles, http_client_context
from runtime import cluster
from runtime.cluster import RETRYABLE, LocalCluster

T = TypeVar("T")


def run_async(main: Callable[[], Coroutine[Any, Any, T]], timeout: float = 60.0) -> T:
    return cluster.run_async(main, timeout)


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


class SecureCluster(LocalCluster):
    """A LocalCluster whose nodes share certificates and a token table; with tls, HTTPS and
    mutual TLS between peers. The harness polls status with a read token."""

    retry_errors = (*RETRYABLE, AssertionError)  # a status refused while the cluster settles
    status_headers = {"Authorization": f"Bearer {TOKENS['read']}"}

    def __init__(self, root: Path, n: int = 3, *, tls: bool = True, **overrides: Any) -> None:
        self.certs = make_certs(root / "certs", [f"n{i + 1}" for i in range(n)])
        self.tls = tls
        sec_overrides = overrides.pop("security", {})
        tokens = TokenTable.load(self.certs / "tokens.txt")

        def security(nid: str) -> dict[str, Any]:
            tls_files = TlsFiles.from_dir(self.certs, nid) if tls else None
            return {"security": SecurityConfig(tls=tls_files, tokens=tokens, **sec_overrides)}

        defaults: dict[str, Any] = {"fsync": False, "allow_fault_injection": False}
        super().__init__(
            root,
            n,
            scheme="https" if tls else "http",
            per_node=security,
            **(defaults | overrides),
        )

    def port(self, nid: str) -> int:
        return self.settings[nid].http[1]

    def raft_port(self, nid: str) -> int:
        return self.settings[nid].listen[1]

    def _session(self) -> aiohttp.ClientSession:
        ssl_ctx: ssl.SSLContext | bool = client_ssl(self.certs) if self.tls else True
        return aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=10),
            connector=aiohttp.TCPConnector(ssl=ssl_ctx),
        )

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
