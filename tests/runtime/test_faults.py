"""Partitions, bad peers, restarts and disk failures on a real cluster in one event loop."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from raftkv.errors import DiskError
from raftkv.storage import LogStorage
from raftkv.wire import encode_handshake

from .cluster import LocalCluster, eventually, run_async


def test_isolated_leader_cannot_serve_linearizable_reads(tmp_path: Path) -> None:
    async def main() -> None:
        async with LocalCluster(tmp_path) as c:
            old = await c.leader()
            status, _ = await c.put(old, "x", b"before")
            assert status == 200
            async with c.client.post(c.url(old, "/v1/debug/net"), json={"isolate": True}) as r:
                assert r.status == 200
                assert (await r.json())["isolate"] is True

            # The old leader must not answer a linearizable read: no quorum confirms it.
            code, body, headers = await c.get(old, "x")
            assert code in (503, 504), body
            assert b'"no_quorum"' in body or b'"no_leader"' in body or b'"timeout"' in body
            if code == 503:
                assert headers["Retry-After"]

            # The majority elects a new leader and serves writes.
            others = [n for n in c.ids if n != old]
            new = await c.leader(among=others)
            assert new != old
            status, _ = await c.put(others[0], "x", b"after")
            assert status == 200
            code, value, _ = await c.get(others[1], "x")
            assert (code, value) == (200, b"after")

            # The old leader notices it lost its quorum and steps down; writes sent to it
            # fail without claiming anything about a write they may have proposed.
            async def stepped_down() -> bool:
                return bool((await c.status(old))["role"] != "leader")

            await eventually(stepped_down, what="the isolated leader to step down")
            status, body = await c.put(old, "y", b"lost?")
            assert status in (503, 504), body
            if status == 504:
                assert "unknown" in body["message"]

            # Heal: the old leader rejoins as a follower and catches up.
            async with c.client.post(c.url(old, "/v1/debug/net"), json={"heal": True}) as r:
                assert r.status == 200

            async def caught_up() -> bool:
                code, value, _ = await c.get(old, "x", "stale")
                return (code, value) == (200, b"after")

            await eventually(caught_up, what="the old leader to catch up")
            assert await c.leader() in others

    run_async(main)


def test_drop_to_and_delay(tmp_path: Path) -> None:
    async def main() -> None:
        async with LocalCluster(tmp_path) as c:
            leader = await c.leader()
            cut = next(n for n in c.ids if n != leader)
            net = c.url(leader, "/v1/debug/net")
            async with c.client.post(net, json={"delay_ms": 150}) as r:
                assert (await r.json())["delay_ms"] == 150
            started = asyncio.get_running_loop().time()
            status, _ = await c.put(leader, "slow", b"1")
            assert status == 200
            assert asyncio.get_running_loop().time() - started >= 0.15
            async with c.client.post(net, json={"delay_ms": 0, "drop_to": [cut]}) as r:
                assert (await r.json()) == {
                    "isolate": False,
                    "drop_to": [cut],
                    "delay_ms": 0.0,
                    "loss": 0.0,
                    "duplicate": 0.0,
                }
            status, _ = await c.put(leader, "dropped", b"2")  # the leader and `other` commit it
            assert status == 200
            await asyncio.sleep(0.2)
            code, _, _ = await c.get(cut, "dropped", "stale")
            assert code == 404  # nothing reaches `cut`
            async with c.client.post(net, json={"heal": True}) as r:
                assert r.status == 200

            async def caught_up() -> bool:
                code, _, _ = await c.get(cut, "dropped", "stale")
                return code == 200

            await eventually(caught_up, what=f"{cut} to catch up after heal")

    run_async(main)


def test_debug_net_is_404_without_fault_injection(tmp_path: Path) -> None:
    async def main() -> None:
        async with LocalCluster(tmp_path, n=1, allow_fault_injection=False) as c:
            url = c.url("n1", "/v1/debug/net")
            async with c.client.post(url, json={"isolate": True}) as r:
                assert r.status == 404
                assert (await r.json())["error"] == "not_found"

    run_async(main)


def test_bad_peers_are_rejected_and_the_node_keeps_serving(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="raftkv.transport")

    async def main() -> None:
        async with LocalCluster(tmp_path) as c:
            leader = await c.leader()
            host, port = c.settings[leader].listen
            attacks = [
                encode_handshake("another-cluster", "n2"),  # wrong cluster id
                encode_handshake("raftkv", "intruder"),  # not a member
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)) * 8,  # garbage
                encode_handshake("raftkv", "n2") + b"RK\x01\x02" + b"\xff" * 64,  # bad frame
            ]
            for payload in attacks:
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(payload)
                await writer.drain()
                rest = await asyncio.wait_for(reader.read(), 5)  # the node hangs up
                assert not rest or rest.startswith(b"RK")  # at most its own handshake
                writer.close()
            status, _ = await c.put(leader, "still", b"alive")
            assert status == 200
            assert await c.leader() == leader

    run_async(main)
    text = caplog.text
    assert "another-cluster" in text and "rejected connection" in text
    assert "'intruder' is not a peer" in text
    assert "bad magic" in text


def test_node_of_another_cluster_cannot_join(tmp_path: Path) -> None:
    async def main() -> None:
        async with LocalCluster(tmp_path) as c:
            await c.stop("n3")
            await c.start("n3", cluster_id="impostors", data_dir=tmp_path / "n3-impostor")
            survivors = ["n1", "n2"]
            leader = await c.leader(among=survivors)
            status, _ = await c.put(leader, "k", b"v")
            assert status == 200
            await asyncio.sleep(0.5)
            st = await c.status("n3")
            assert st["leader"] is None and st["commit_index"] == 0
            members = {m["id"]: m for m in (await c.status(leader))["members"]}
            assert members["n3"]["reachable"] is False

    run_async(main)


def test_restart_keeps_acknowledged_writes(tmp_path: Path) -> None:
    async def main() -> None:
        acked: dict[str, int] = {}
        async with LocalCluster(tmp_path) as c:
            leader = await c.leader()
            for i in range(20):
                status, body = await c.put(c.ids[i % 3], f"key{i}", b"value%d" % i)
                assert status == 200
                acked[f"key{i}"] = body["revision"]
            # One node restarts alone and catches up on what it missed.
            follower = next(n for n in c.ids if n != leader)
            await c.stop(follower)
            status, body = await c.put(leader, "while-down", b"x")
            assert status == 200
            acked["while-down"] = body["revision"]
            await c.start(follower)

            async def caught_up() -> bool:
                code, _, _ = await c.get(follower, "while-down", "stale")
                return code == 200

            await eventually(caught_up, what="the restarted follower to catch up")
            # Then the whole cluster stops (an acknowledged write is on a majority's disk).
        async with LocalCluster.reopen(c) as c2:
            await c2.leader()
            for key, revision in acked.items():
                code, _, headers = await c2.get("n1", key)
                assert code == 200, key
                assert headers["X-Raftkv-Revision"] == str(revision)
            status, body = await c2.put("n2", "after-restart", b"y")
            assert status == 200 and body["revision"] == max(acked.values()) + 1

    run_async(main)


def test_disk_failure_stops_the_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        c = LocalCluster(tmp_path, n=1)
        async with c:
            await c.leader()
            status, _ = await c.put("n1", "ok", b"1")
            assert status == 200

            def broken_sync(*_: object, **__: object) -> None:
                raise DiskError("injected: fdatasync failed (EIO)")

            monkeypatch.setattr(LogStorage, "sync", broken_sync)
            status, body = await c.put("n1", "doomed", b"2")
            assert status == 503 and body["error"] == "disk_error", body
            with pytest.raises(DiskError):
                await c.wait_stopped("n1")

    run_async(main)
