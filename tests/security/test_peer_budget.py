"""Requests forwarded by peers have a connection budget of their own on the leader, and a
client cannot claim it (issue #15, item 4): with TLS only a node certificate earns it, with
tokens only the key derived from the token table, with neither the member-naming header. The
same proofs guard the forwarding routes themselves (/v1/internal/OP)."""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import replace
from pathlib import Path

from raftkv.kv.commands import Put, encode_command
from raftkv.runtime.admission import HOP_HEADER, PEER_KEY_HEADER, forward_key
from raftkv.runtime.forward import CLUSTER_HEADER
from raftkv.security.config import SecurityConfig
from runtime.cluster import LocalCluster

from .secure import TOKENS, SecureCluster, bearer, client_ssl, run_async

LIMIT = 4
Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _ask(conn: Conn, method: str, path: str, headers: dict[str, str]) -> tuple[int, str]:
    """One request on conn: (status, error code or "")."""
    reader, writer = conn
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    body = b"v" if method == "PUT" else b""
    writer.write(
        f"{method} {path} HTTP/1.1\r\nHost: t\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = 0
    for line in raw.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    doc = json.loads(await reader.readexactly(length)) if length else {}
    error = doc.get("error", "") if isinstance(doc, dict) else ""
    return int(raw.split(b" ")[1]), str(error)


async def _fill(port: int, ctx: ssl.SSLContext | None, headers: dict[str, str]) -> list[Conn]:
    """Client connections to port until one is refused: the client budget is full."""
    held: list[Conn] = []
    for _ in range(LIMIT + 2):
        conn = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        status, error = await _ask(conn, "GET", "/v1/status", headers)
        if status == 503:
            assert error == "too_many_connections"
            conn[1].close()
            return held
        assert status == 200, (status, error)
        held.append(conn)
    raise AssertionError(f"no connection refused after {len(held)}")


async def _fresh(
    port: int, ctx: ssl.SSLContext | None, method: str, path: str, headers: dict[str, str]
) -> tuple[int, str]:
    conn = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    try:
        return await _ask(conn, method, path, headers)
    finally:
        conn[1].close()


def test_with_tls_only_a_node_certificate_earns_the_peer_budget(tmp_path: Path) -> None:
    async def main() -> None:
        async with SecureCluster(tmp_path, 3, security={"max_http_connections": LIMIT}) as c:
            leader = await c.leader()
            follower = next(n for n in c.ids if n != leader)
            ctx = client_ssl(c.certs)
            held = await _fill(c.port(leader), ctx, bearer("read"))
            try:
                # A client naming a peer in the forwarding header gets nothing from it.
                forged = {**bearer("write"), HOP_HEADER: follower}
                answer = await _fresh(c.port(leader), ctx, "PUT", "/v1/kv/f", forged)
                assert answer == (503, "too_many_connections")
                # The follower's own forwarding (its node certificate) still gets through.
                status, body, _ = await c.request(
                    "PUT", follower, "/v1/kv/f", body=b"v", headers=bearer("write")
                )
                assert status == 200, body
                answer = await _fresh(c.port(leader), ctx, "GET", "/healthz", bearer("read"))
                assert answer == (200, "")
            finally:
                for _, w in held:
                    w.close()

    run_async(main)


def test_with_tokens_only_the_derived_key_earns_the_peer_budget(tmp_path: Path) -> None:
    async def main() -> None:
        limits = {"max_http_connections": LIMIT}
        async with SecureCluster(tmp_path, 3, tls=False, security=limits) as c:
            leader = await c.leader()
            follower = next(n for n in c.ids if n != leader)
            key = forward_key(c.settings[leader])
            assert key is not None and key not in TOKENS.values()
            held = await _fill(c.port(leader), None, bearer("read"))
            try:
                port, w = c.port(leader), bearer("write")
                for claim in ({HOP_HEADER: follower}, {HOP_HEADER: follower, PEER_KEY_HEADER: "0"}):
                    answer = await _fresh(port, None, "PUT", "/v1/kv/f", {**w, **claim})
                    assert answer == (503, "too_many_connections"), claim
                # The key, from a member: admitted (and still authorized as its token says).
                proof = {HOP_HEADER: follower, PEER_KEY_HEADER: key}
                assert await _fresh(port, None, "PUT", "/v1/kv/f", {**w, **proof}) == (200, "")
                answer = await _fresh(port, None, "PUT", "/v1/kv/f", {**bearer("read"), **proof})
                assert answer == (403, "forbidden")
                status, body, _ = await c.request("PUT", follower, "/v1/kv/g", body=b"v", headers=w)
                assert status == 200, body
            finally:
                for _, wr in held:
                    wr.close()

    run_async(main)


def test_without_authentication_the_header_must_name_a_member(tmp_path: Path) -> None:
    async def main() -> None:
        sec = SecurityConfig(max_http_connections=LIMIT)
        async with LocalCluster(tmp_path, 3, security=sec) as c:
            leader = await c.leader()
            follower = next(n for n in c.ids if n != leader)
            port = c.settings[leader].http[1]
            held = await _fill(port, None, {})
            try:
                answer = await _fresh(port, None, "PUT", "/v1/kv/f", {HOP_HEADER: "n9"})
                assert answer == (503, "too_many_connections")
                answer = await _fresh(port, None, "PUT", "/v1/kv/f", {HOP_HEADER: follower})
                assert answer == (200, "")
                status, _ = await c.put(follower, "g", b"v")
                assert status == 200
            finally:
                for _, w in held:
                    w.close()

    run_async(main)


def test_forward_key_is_none_with_tls_or_without_tokens(tmp_path: Path) -> None:
    with_tls = SecureCluster(tmp_path / "a", 1)
    plain = LocalCluster(tmp_path / "b", 1)
    assert forward_key(with_tls.settings["n1"]) is None
    assert forward_key(plain.settings["n1"]) is None
    tokens = SecureCluster(tmp_path / "c", 1, tls=False).settings["n1"]
    other_cluster = replace(tokens, cluster_id="other")
    assert forward_key(tokens) != forward_key(other_cluster)


def _propose(key: str) -> bytes:
    return encode_command(Put(key, b"v", None), None)


def test_with_tokens_forwarded_ops_need_the_key_and_the_clients_role(tmp_path: Path) -> None:
    """POST /v1/internal/OP (runtime/forward.py): a client cannot call it by naming a member;
    a member's call is authorized again for the original client's role."""

    async def main() -> None:
        async with SecureCluster(tmp_path, 3, tls=False) as c:
            leader = await c.leader()
            follower = next(n for n in c.ids if n != leader)
            key = forward_key(c.settings[leader])
            assert key is not None
            member = {CLUSTER_HEADER: "raftkv", HOP_HEADER: follower}
            proof = {**member, PEER_KEY_HEADER: key}
            cases = [
                ({**bearer("admin"), **member}, 403, "forbidden"),  # no key: not a member
                ({**bearer("admin"), **member, PEER_KEY_HEADER: "0" * 64}, 403, "forbidden"),
                (proof, 401, "unauthorized"),  # a member, but whose request is it?
                ({**bearer("read"), **proof}, 403, "forbidden"),  # propose needs write
            ]
            for headers, status, code in cases:
                answer = await c.request(
                    "POST", leader, "/v1/internal/propose", body=_propose("f"), headers=headers
                )
                assert answer[:1] == (status,) and json.loads(answer[1])["error"] == code
            got = await c.request("GET", leader, "/v1/kv/f", headers=bearer("read"))
            assert got[0] == 404  # nothing refused was applied
            # read-index needs only read; propose with a write token goes through.
            status, _, _ = await c.request(
                "POST",
                leader,
                "/v1/internal/read-index",
                body=b"\x91\xc2",
                headers={**bearer("read"), **proof},
            )
            assert status == 200
            status, _, _ = await c.request(
                "POST",
                leader,
                "/v1/internal/propose",
                body=_propose("f"),
                headers={**bearer("write"), **proof},
            )
            assert status == 200
            got = await c.request("GET", follower, "/v1/kv/f", headers=bearer("read"))
            assert got[:2] == (200, b"v")

    run_async(main)


def test_with_tls_only_a_node_certificate_may_call_forwarded_ops(tmp_path: Path) -> None:
    async def main() -> None:
        async with SecureCluster(tmp_path, 3) as c:
            leader = await c.leader()
            follower = next(n for n in c.ids if n != leader)
            member = {CLUSTER_HEADER: "raftkv", HOP_HEADER: follower}
            admin = client_ssl(c.certs, "admin")  # a client certificate with every role
            status, body, _ = await c.request(
                "POST",
                leader,
                "/v1/internal/propose",
                body=_propose("t"),
                headers=member,
                ssl_ctx=admin,
            )
            assert status == 403 and json.loads(body)["error"] == "forbidden"
            node = client_ssl(c.certs)
            node.load_cert_chain(c.certs / f"{follower}.pem", c.certs / f"{follower}.key")
            status, body, _ = await c.request(  # the node itself, for a write token's client
                "POST",
                leader,
                "/v1/internal/propose",
                body=_propose("t"),
                headers={**member, **bearer("write")},
                ssl_ctx=node,
            )
            assert status == 200, body
            got = await c.request("GET", leader, "/v1/kv/t", headers=bearer("read"))
            assert got[:2] == (200, b"v")

    run_async(main)
