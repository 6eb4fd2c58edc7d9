"""Mutual TLS between peers: only a node certificate of the cluster CA, under its own id and the
cluster's id, gets a handshake back; everything else is dropped and the node keeps serving."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import replace
from pathlib import Path

from raftkv.security import certs
from raftkv.security.tls import TlsFiles, peer_client_context
from raftkv.wire import FrameDecoder, Handshake, encode_handshake

from .secure import SecureCluster, bearer, run_async


async def peer_attempt(
    port: int, ctx: ssl.SSLContext | None, cluster_id: str, node_id: str
) -> Handshake | str:
    """Connect to a raft port, send a handshake; the node's handshake back, or why not."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                "127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1" if ctx else None
            ),
            5,
        )
    except (ssl.SSLError, OSError) as e:
        return f"refused at connect: {e}"
    try:
        writer.write(encode_handshake(cluster_id, node_id))
        decoder = FrameDecoder()
        while True:
            try:
                data = await asyncio.wait_for(reader.read(65536), 5)
            except (ssl.SSLError, OSError) as e:
                return f"refused: {e}"
            if not data:
                return "closed without a handshake"
            frames = decoder.feed(data)
            if frames:
                frame = frames[0]
                return frame if isinstance(frame, Handshake) else "not a handshake"
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def test_only_the_clusters_own_node_certificates_are_accepted(tmp_path: Path) -> None:
    other = tmp_path / "other-ca"
    certs.init_dir(other, ["n1", "n2", "n3"], tokens=False)

    async def main() -> None:
        async with SecureCluster(tmp_path) as c:
            leader = await c.leader()
            port = c.raft_port(leader)
            cluster_id = c.settings[leader].cluster_id
            sender = next(n for n in c.ids if n != leader)
            real = c.certs
            good = peer_client_context(TlsFiles.from_dir(real, sender))

            # Positive control: the real node certificate under its own id.
            got = await peer_attempt(port, good, cluster_id, sender)
            assert isinstance(got, Handshake) and got.node_id == leader

            # A certificate from another CA (trusting ours, so only the node can refuse).
            foreign = peer_client_context(
                TlsFiles(other / f"{sender}.pem", other / f"{sender}.key", real / "ca.pem")
            )
            assert not isinstance(await peer_attempt(port, foreign, cluster_id, sender), Handshake)
            # Our CA, but a client certificate (OU=admin), not a node's.
            client_cert = peer_client_context(
                TlsFiles(real / "client-admin.pem", real / "client-admin.key", real / "ca.pem")
            )
            assert not isinstance(
                await peer_attempt(port, client_cert, cluster_id, sender), Handshake
            )
            # A real node certificate claiming another node's id.
            third = next(n for n in c.ids if n not in (leader, sender))
            assert not isinstance(await peer_attempt(port, good, cluster_id, third), Handshake)
            # The right certificate, the wrong cluster id.
            assert not isinstance(await peer_attempt(port, good, "another", sender), Handshake)
            # No TLS at all.
            assert not isinstance(await peer_attempt(port, None, cluster_id, sender), Handshake)

            # The cluster still works, with the same leader.
            status, body, _ = await c.request(
                "PUT", leader, "/v1/kv/after", body=b"1", headers=bearer("write")
            )
            assert status == 200, body
            assert await c.leader() == leader

    run_async(main)


def test_a_node_of_another_ca_cannot_join_or_be_joined(tmp_path: Path) -> None:
    """Our node dialing a server with another CA's certificate refuses it too: a cluster
    whose n3 runs with a foreign certificate has n3 cut off, and the others go on."""

    async def main() -> None:
        c = SecureCluster(tmp_path)
        other = tmp_path / "other-ca"
        certs.init_dir(other, ["n3"], tokens=False)
        bad = c.settings["n3"].security
        c.settings["n3"] = replace(
            c.settings["n3"],
            security=replace(
                bad, tls=TlsFiles(other / "n3.pem", other / "n3.key", other / "ca.pem")
            ),
        )
        async with c:
            leader = await c.leader(among=["n1", "n2"])
            status, body, _ = await c.request(
                "PUT", leader, "/v1/kv/k", body=b"v", headers=bearer("write")
            )
            assert status == 200, body
            await asyncio.sleep(0.5)
            st = await c.status(leader)
            n3 = next(m for m in st["members"] if m["id"] == "n3")
            assert n3["match_index"] in (None, 0) and not n3["reachable"], st

    run_async(main)


def test_peer_connection_limit_and_handshake_timeout(tmp_path: Path) -> None:
    async def main() -> None:
        limits = {"max_peer_connections": 3, "handshake_timeout_s": 1.0}
        async with SecureCluster(tmp_path, security=limits) as c:
            leader = await c.leader()
            port = c.raft_port(leader)
            ctx = peer_client_context(TlsFiles.from_dir(c.certs, leader))
            # The two real peers hold 2 of 3 slots: one silent connection fits, the next is
            # closed at once; the silent one is closed after the handshake timeout.
            loop = asyncio.get_running_loop()
            r1, w1 = await asyncio.open_connection(
                "127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1"
            )
            await asyncio.sleep(0.2)
            r2, w2 = await asyncio.open_connection(
                "127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1"
            )
            start = loop.time()
            assert await asyncio.wait_for(r2.read(1), 3) == b""
            assert loop.time() - start < 0.9  # refused, not timed out
            start = loop.time()
            assert await asyncio.wait_for(r1.read(1), 5) == b""
            assert 0.5 < loop.time() - start + 0.2 < 3.0  # closed by the handshake timeout
            for w in (w1, w2):
                w.close()
            status, _, _ = await c.request(
                "PUT", leader, "/v1/kv/k", body=b"v", headers=bearer("write")
            )
            assert status == 200

    run_async(main)
