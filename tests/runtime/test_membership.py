"""Membership changes, log compaction and snapshot install on a real in-process cluster: a node
joins a cluster whose log was compacted (it catches up by a snapshot sent in chunks), is
promoted, survives a restart knowing its peers; the leader removes itself and shuts down."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from raftkv.devcluster.ports import free_ports
from raftkv.runtime.join import join
from raftkv.runtime.settings import NodeSettings, PeerAddress

from .cluster import LocalCluster, eventually, run_async

SMALL: dict[str, Any] = {"snapshot_entries": 40, "max_frame_size": 4096}


def _new_node(c: LocalCluster, root: Path, nid: str) -> NodeSettings:
    raft, http = free_ports(2)
    addr = PeerAddress("127.0.0.1", raft, f"http://127.0.0.1:{http}")
    base = c.settings[c.ids[0]]
    settings = replace(
        base,
        node_id=nid,
        data_dir=root / nid,
        listen=addr.raft,
        http=("127.0.0.1", http),
        peers={nid: addr},
    )
    c.settings[nid] = settings
    c.ids.append(nid)
    return settings


async def _members(c: LocalCluster, nid: str) -> dict[str, Any]:
    async with c.client.get(c.url(nid, "/v1/members")) as r:
        assert r.status == 200
        doc: dict[str, Any] = await r.json()
        return doc


def test_join_by_snapshot_promote_restart_and_remove_the_leader(tmp_path: Path) -> None:
    async def main() -> None:
        async with LocalCluster(tmp_path, **SMALL) as c:
            leader = await c.leader()
            value = b"v" * 300  # 200 of these: a snapshot far bigger than one 4 KiB frame
            for i in range(200):
                status, _ = await c.put(leader, f"k{i:03d}", value)
                assert status == 200
            snaps = list((tmp_path / leader / "raft").glob("snap-*.snap"))
            assert snaps, "the leader never compacted its log"

            n4 = _new_node(c, tmp_path, "n4")
            assert await join(n4, [c.url("n2")], timeout=5.0)
            await c.start("n4")

            async def caught_up() -> bool:
                got = await c.get("n4", "k199", "stale")
                return got[:2] == (200, value)

            await eventually(caught_up, what="n4 to catch up")
            # It caught up from a snapshot: the entries it needed were compacted away.
            assert list((tmp_path / "n4" / "raft").glob("snap-*.snap"))
            n4_metrics = await _metrics(c, "n4")
            assert n4_metrics[("raftkv_snapshots_total", (("kind", "installed"),))] >= 1
            assert n4_metrics[("raftkv_snapshot_index", ())] >= 40
            leader_metrics = await _metrics(c, leader)
            assert leader_metrics[("raftkv_snapshots_total", (("kind", "taken"),))] >= 1
            assert leader_metrics[("raftkv_members", (("role", "learner"),))] == 1.0
            doc = await _members(c, "n1")
            row = next(m for m in doc["members"] if m["id"] == "n4")
            assert row["role"] == "learner" and row["http_url"] == n4.http_url

            async def promoted() -> dict[str, Any] | None:
                async with c.client.post(c.url("n3", "/v1/members/n4/promote")) as r:
                    if r.status == 409:
                        assert (await r.json())["error"] == "not_caught_up"
                        return None
                    assert r.status == 200, await r.text()
                    answer: dict[str, Any] = await r.json()
                    return answer

            answer = await eventually(promoted, what="n4 to be promoted")
            assert {m["id"]: m["role"] for m in answer["members"]}["n4"] == "voter"

            # Restart n4: its saved address book brings back every peer.
            await c.stop("n4")
            await c.start("n4")
            leader = await c.leader()
            status, _ = await c.put("n4", "after-restart", b"x")  # forwarded by n4
            assert status == 200

            # The leader removes itself: it answers, steps down, and shuts itself down.
            async with c.client.delete(c.url(leader, f"/v1/members/{leader}")) as r:
                assert r.status == 200, await r.text()
                doc = await r.json()
            assert leader not in {m["id"] for m in doc["members"]}
            await c.wait_stopped(leader)
            c.ids.remove(leader)
            rest = [n for n in c.ids if c.running(n)]
            new_leader = await c.leader(rest)
            assert new_leader != leader
            status, _ = await c.put(rest[0], "after-removal", b"y")
            assert status == 200
            for nid in rest:

                async def applied(n: str = nid) -> bytes | None:
                    return await _stale(c, n, "after-removal")

                assert await eventually(applied, what=f"{nid} to apply") == b"y"
                assert (await c.get(nid, "k000", "stale"))[1] == value
            members = (await _members(c, new_leader))["members"]
            assert sorted(m["id"] for m in members) == sorted(rest)

    run_async(main, timeout=60)


async def _metrics(
    c: LocalCluster, nid: str
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with c.client.get(c.url(nid, "/metrics")) as r:
        assert r.status == 200
        text = await r.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


async def _stale(c: LocalCluster, nid: str, key: str) -> bytes | None:
    status, body, _ = await c.get(nid, key, "stale")
    return body if status == 200 else None


def test_membership_requests_are_checked(tmp_path: Path) -> None:
    async def main() -> None:
        async with LocalCluster(tmp_path) as c:
            leader = await c.leader()
            cases: list[tuple[str, str, Any, int, str]] = [
                ("POST", "/v1/members", {"id": "n9"}, 400, "bad_request"),
                (
                    "POST",
                    "/v1/members",
                    {"id": "bad id", "raft_address": "h:1", "http_url": "http://h:2"},
                    400,
                    "bad_request",
                ),
                (
                    "POST",
                    "/v1/members",
                    {"id": "n9", "raft_address": "nohost", "http_url": "http://h:2"},
                    400,
                    "bad_request",
                ),
                ("POST", "/v1/members/n9/promote", None, 400, "bad_request"),
            ]
            for method, path, body, status, code in cases:
                async with c.client.request(method, c.url(leader, path), json=body) as r:
                    assert r.status == status, (path, body, await r.text())
                    assert (await r.json())["error"] == code
            # Changes that already hold answer 200 "already" (a lost answer may be retried).
            async with c.client.post(c.url("n2", "/v1/members/n1/promote")) as r:
                assert r.status == 200 and (await r.json())["already"] is True
            async with c.client.delete(c.url("n2", "/v1/members/n9")) as r:
                assert r.status == 200 and (await r.json())["already"] is True
            # A learner that never ran is not caught up: promote is refused with 409.
            async with c.client.post(
                c.url("n3", "/v1/members"),
                json={"id": "n9", "raft_address": "127.0.0.1:1", "http_url": "http://127.0.0.1:2"},
            ) as r:
                assert r.status == 200, await r.text()
                doc = await r.json()
            assert {m["id"]: m["role"] for m in doc["members"]}["n9"] == "learner"
            async with c.client.post(c.url(leader, "/v1/members/n9/promote")) as r:
                assert r.status == 409 and (await r.json())["error"] == "not_caught_up"
            async with c.client.delete(c.url(leader, "/v1/members/n9")) as r:
                assert r.status == 200
            assert "n9" not in {m["id"] for m in (await _members(c, "n2"))["members"]}

    run_async(main)
