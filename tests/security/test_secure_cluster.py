"""A 3-node TLS cluster in one process: tokens and client certificates, roles, forwarding, and
the leader refusing over raw TLS what it refuses to the client library."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from raftkv.client import AsyncClient, Credentials
from raftkv.errors import Forbidden, Unauthorized
from raftkv.security.auth import FORWARDED_IDENTITY_HEADER

from .secure import SecureCluster, bearer, client_ssl, run_async


def _error(body: bytes) -> str:
    doc = json.loads(body)
    assert set(doc) >= {"error", "message"}, doc
    return str(doc["error"])


def test_tokens_roles_and_forwarding_over_tls(tmp_path: Path) -> None:
    async def main() -> None:
        async with SecureCluster(tmp_path) as c:
            leader = await c.leader()
            follower = next(n for n in c.ids if n != leader)
            for nid in (leader, follower):
                # No credentials: 401 with a JSON body and a Bearer challenge.
                status, body, headers = await c.request("PUT", nid, "/v1/kv/x", body=b"1")
                assert status == 401 and _error(body) == "unauthorized"
                assert headers["WWW-Authenticate"].startswith("Bearer")
                status, body, _ = await c.request("GET", nid, "/v1/kv/x")
                assert status == 401
                status, body, _ = await c.request("GET", nid, "/v1/status")
                assert status == 401
                # A wrong token: 401; a read token cannot write: 403.
                bad = {"Authorization": "Bearer not-a-known-token-at-all"}
                status, body, _ = await c.request("PUT", nid, "/v1/kv/x", body=b"1", headers=bad)
                assert status == 401 and b"unknown bearer token" in body
                status, body, _ = await c.request(
                    "PUT", nid, "/v1/kv/x", body=b"1", headers=bearer("read")
                )
                assert status == 403 and _error(body) == "forbidden"
                # write may write and read; the follower forwards to the leader, which
                # checks the token again.
                status, body, _ = await c.request(
                    "PUT", nid, f"/v1/kv/k-{nid}", body=b"v", headers=bearer("write")
                )
                assert status == 200, body
                status, body, _ = await c.request(
                    "GET", nid, f"/v1/kv/k-{nid}", headers=bearer("read")
                )
                assert (status, body) == (200, b"v")
                # admin routes: write is not enough.
                status, body, _ = await c.request(
                    "POST", nid, "/v1/leader/transfer", body=b"{}", headers=bearer("write")
                )
                assert status == 403
            # Nothing that was refused changed anything.
            status, _, _ = await c.request("GET", leader, "/v1/kv/x", headers=bearer("read"))
            assert status == 404

    run_async(main)


def test_client_certificates_carry_roles_and_are_forwarded(tmp_path: Path) -> None:
    async def main() -> None:
        async with SecureCluster(tmp_path) as c:
            leader = await c.leader()
            follower = next(n for n in c.ids if n != leader)
            writer, reader = client_ssl(c.certs, "writer"), client_ssl(c.certs, "reader")
            for nid in (leader, follower):
                status, body, _ = await c.request(
                    "PUT", nid, f"/v1/kv/c-{nid}", body=b"cert", ssl_ctx=writer
                )
                assert status == 200, body
                status, body, _ = await c.request("GET", nid, f"/v1/kv/c-{nid}", ssl_ctx=reader)
                assert (status, body) == (200, b"cert")
                status, body, _ = await c.request(
                    "PUT", nid, "/v1/kv/no", body=b"x", ssl_ctx=reader
                )
                assert status == 403, body
                # A client cannot claim a forwarded identity: only node certificates may.
                spoof = {FORWARDED_IDENTITY_HEADER: "admin mallory"}
                status, body, _ = await c.request(
                    "PUT", nid, "/v1/kv/no", body=b"x", ssl_ctx=reader, headers=spoof
                )
                assert status == 403, body
            # A node certificate alone is no client credential.
            node_ctx = client_ssl(c.certs)
            node_ctx.load_cert_chain(c.certs / "n1.pem", c.certs / "n1.key")
            status, body, _ = await c.request("GET", leader, "/v1/kv/c-n1", ssl_ctx=node_ctx)
            assert status == 401, body
            status, _, _ = await c.request("GET", leader, "/v1/kv/no", headers=bearer("read"))
            assert status == 404

    run_async(main)


def test_the_leader_refuses_without_a_token_over_tls(tmp_path: Path) -> None:
    async def main() -> None:
        async with SecureCluster(tmp_path) as c:
            leader = await c.leader()
            ctx = client_ssl(c.certs)
            port = c.port(leader)

            async def raw(request: bytes) -> tuple[int, bytes]:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1"
                )
                try:
                    writer.write(request)
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.lower() == b"content-length":
                            length = int(value)
                    body = await reader.readexactly(length)
                    return int(head.split(b" ")[1]), body
                finally:
                    writer.close()

            # With a token the leader serves the PUT, over TLS.
            token = f"Authorization: Bearer {bearer('write')['Authorization'][7:]}\r\n".encode()
            put = b"PUT /v1/kv/fast HTTP/1.1\r\nHost: t\r\n" + token
            status, body = await raw(put + b"Content-Length: 2\r\nConnection: close\r\n\r\nok")
            assert status == 200, body
            # Without a token, or with a bad one, the same request is refused.
            for auth in (b"", b"Authorization: Bearer wrong-wrong-wrong-wrong\r\n"):
                req = b"PUT /v1/kv/fast HTTP/1.1\r\nHost: t\r\n" + auth
                status, body = await raw(req + b"Content-Length: 3\r\nConnection: close\r\n\r\nbad")
                assert status == 401 and _error(body) == "unauthorized"
                get = (
                    b"GET /v1/kv/fast HTTP/1.1\r\nHost: t\r\n" + auth + b"Connection: close\r\n\r\n"
                )
                status, body = await raw(get)
                assert status == 401
            # A read token: GET yes, PUT no.
            read = f"Authorization: Bearer {bearer('read')['Authorization'][7:]}\r\n".encode()
            status, body = await raw(
                b"GET /v1/kv/fast HTTP/1.1\r\nHost: t\r\n" + read + b"Connection: close\r\n\r\n"
            )
            assert (status, body) == (200, b"ok")
            status, body = await raw(
                b"PUT /v1/kv/fast HTTP/1.1\r\nHost: t\r\n"
                + read
                + b"Content-Length: 1\r\nConnection: close\r\n\r\nx"
            )
            assert status == 403
            status, body, _ = await c.request("GET", leader, "/v1/kv/fast", headers=bearer("read"))
            assert body == b"ok"

    run_async(main)


def test_the_python_client_with_token_and_ca(tmp_path: Path) -> None:
    async def main() -> None:
        async with SecureCluster(tmp_path) as c:
            await c.leader()
            endpoints = [c.url(n) for n in c.ids]
            creds = Credentials(token=bearer("write")["Authorization"][7:], ca=c.certs / "ca.pem")
            async with AsyncClient(endpoints, credentials=creds, timeout=10) as kv:
                await kv.put("client", "yes")
                got = await kv.get("client")
                assert got is not None and got.value == b"yes"
            certified = Credentials(
                ca=c.certs / "ca.pem",
                cert=c.certs / "client-admin.pem",
                key=c.certs / "client-admin.key",
            )
            async with AsyncClient(endpoints, credentials=certified, timeout=10) as kv:
                await kv.put("by-cert", "1")
                assert await kv.transfer_leader() in c.ids
            anonymous = Credentials(ca=c.certs / "ca.pem")
            async with AsyncClient(endpoints, credentials=anonymous, timeout=3) as kv:
                with pytest.raises(Unauthorized):
                    await kv.put("nope", "1")
            reader = Credentials(token=bearer("read")["Authorization"][7:], ca=c.certs / "ca.pem")
            async with AsyncClient(endpoints, credentials=reader, timeout=3) as kv:
                with pytest.raises(Forbidden):
                    await kv.put("nope", "1")

    run_async(main)


def test_an_idle_tls_connection_is_closed(tmp_path: Path) -> None:
    async def main() -> None:
        limits = {"idle_timeout_s": 0.5}
        async with SecureCluster(tmp_path, 1, security=limits) as c:
            await c.leader()
            status, body, _ = await c.request("PUT", "n1", "/v1/kv/a", body=b"1")
            assert status == 401 and _error(body) == "unauthorized"
            status, body, _ = await c.request(
                "PUT", "n1", "/v1/kv/a", body=b"1", headers=bearer("write")
            )
            assert status == 200, body
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", c.port("n1"), ssl=client_ssl(c.certs), server_hostname="127.0.0.1"
            )
            assert await asyncio.wait_for(reader.read(1), 3) == b""  # idle: closed
            writer.close()

    run_async(main)
