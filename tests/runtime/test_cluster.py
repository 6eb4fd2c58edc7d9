"""A real 3-node cluster in one event loop: sockets on 127.0.0.1, fsync to tmp dirs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from .cluster import LocalCluster, eventually, run_async


def test_put_on_follower_is_readable_everywhere(tmp_path: Path) -> None:
    async def main() -> None:
        async with LocalCluster(tmp_path) as c:
            leader = await c.leader()
            follower = next(n for n in c.ids if n != leader)
            status, body = await c.put(follower, "greeting", b"hello")
            assert status == 200, body
            assert set(body) == {"revision", "index"} and body["revision"] == 1
            for nid in c.ids:
                code, value, headers = await c.get(nid, "greeting")
                assert (code, value) == (200, b"hello")
                assert headers["X-Raftkv-Revision"] == "1"
                code, value, _ = await c.get(nid, "greeting", "lease")
                assert (code, value) == (200, b"hello")

            async def stale_everywhere() -> bool:
                got = [await c.get(nid, "greeting", "stale") for nid in c.ids]
                return all(g[:2] == (200, b"hello") for g in got)

            await eventually(stale_everywhere, what="stale reads to catch up")
            st = await c.status(follower)
            assert set(st) == {
                "id",
                "role",
                "term",
                "leader",
                "commit_index",
                "applied_index",
                "last_index",
                "members",
                "lost_from",
            }
            assert st["lost_from"] == 0
            assert st["id"] == follower and st["role"] == "follower" and st["leader"] == leader
            assert [m["id"] for m in st["members"]] == c.ids
            fields = {"id", "role", "match_index", "reachable", "link", "recovering"}
            assert all(set(m) == fields and m["recovering"] is False for m in st["members"])
            lst = await c.status(leader)
            assert all(m["reachable"] and m["match_index"] >= 2 for m in lst["members"])
            # The link is this node's outbound peer link: none to itself.
            links = {m["id"]: m["link"] for m in lst["members"]}
            assert links.pop(leader) is None
            for link in links.values():
                assert set(link) == {"state", "down_since", "last_error", "failures"}
                assert link["state"] == "connected" and link["down_since"] is None

            async def healthy() -> bool:
                async with c.client.get(c.url(follower, "/healthz")) as r:
                    return r.status == 200

            await eventually(healthy, what="healthz")
            async with c.client.get(c.url(follower, "/v1/members")) as r:
                members = (await r.json())["members"]
                assert [m["id"] for m in members] == c.ids and members[0]["voter"] is True
            async with c.client.post(c.url(leader, "/v1/members"), json={}) as r:
                assert r.status == 400  # membership changes: tests/runtime/test_membership.py
                assert (await r.json())["error"] == "bad_request"

    run_async(main)


def test_txn_cas_delete_and_errors(tmp_path: Path) -> None:
    async def main() -> None:
        async with LocalCluster(tmp_path) as c:
            leader = await c.leader()
            nid = next(n for n in c.ids if n != leader)  # every call goes through forwarding
            _, first = await c.put(nid, "k", b"v1")
            rev = first["revision"]
            status, body = await c.put(nid, f"k?prev_revision={rev + 5}", b"v2")
            assert status == 409 and body["error"] == "conflict" and body["mod_revision"] == rev
            status, body = await c.put(nid, f"k?prev_revision={rev}", b"v2")
            assert status == 200
            status, body = await c.put(nid, "k?prev_revision=0", b"v3")  # must be absent
            assert status == 409

            txn = {
                "compare": [{"key": "k", "target": "value", "op": "=", "value": "v2"}],
                "success": [{"put": {"key": "k", "value": "v3"}}, {"get": {"key": "k"}}],
                "failure": [{"get": {"key": "k"}}],
            }
            async with c.client.post(c.url(nid, "/v1/txn"), json=txn) as r:
                assert r.status == 200
                doc = await r.json()
            assert doc["succeeded"] is True
            assert doc["responses"][1]["get"]["kvs"][0]["value"] == "v3"
            async with c.client.post(c.url(nid, "/v1/txn"), json=txn) as r:
                doc = await r.json()
            assert doc["succeeded"] is False
            assert doc["responses"][0]["get"]["kvs"][0]["value"] == "v3"

            everything = {"success": [{"get": {"key": "", "prefix": True}}]}
            async with c.client.post(c.url(nid, "/v1/txn"), json=everything) as r:
                assert r.status == 200, await r.text()
                kvs = (await r.json())["responses"][0]["get"]["kvs"]
                assert [kv["key"] for kv in kvs] == ["k"]
            async with c.client.delete(c.url(nid, "/v1/kv/k")) as r:
                assert r.status == 200
                assert (await r.json())["deleted"] == 1
            code, _, _ = await c.get(nid, "k")
            assert code == 404

            errors: list[tuple[str, str, Any, int, str]] = [
                ("GET", "/v1/kv/missing", None, 404, "not_found"),
                ("GET", "/v1/nope", None, 404, "not_found"),
                ("PATCH", "/v1/kv/k", None, 405, "method_not_allowed"),
                ("GET", "/v1/kv/k?consistency=weird", None, 400, "bad_request"),
                ("PUT", "/v1/kv/k?prev_revision=x", b"v", 400, "bad_request"),
                ("POST", "/v1/txn", b"{not json", 400, "bad_request"),
                ("POST", "/v1/txn", b'{"success": [{"incr": {}}]}', 400, "bad_request"),
                ("PUT", "/v1/kv/" + "k" * 5000, b"v", 413, "too_large"),
                ("PUT", "/v1/kv/big", b"x" * (1024 * 1024 + 1), 413, "too_large"),
                ("GET", "/v1/debug/net", None, 200, ""),
            ]
            for method, path, data, want, err in errors:
                async with c.client.request(method, c.url(nid, path), data=data) as r:
                    assert r.status == want, (method, path, await r.text())
                    if err:
                        doc = await r.json()
                        assert doc["error"] == err and doc["message"], doc
            headers = {"X-Raftkv-Client": "c1"}  # seq missing
            status, body = await c.put(nid, "k", b"v", headers=headers)
            assert status == 400

    run_async(main)


def test_retried_write_with_same_session_seq_applies_once(tmp_path: Path) -> None:
    async def main() -> None:
        async with LocalCluster(tmp_path) as c:
            leader = await c.leader()
            follower = next(n for n in c.ids if n != leader)
            async with c.client.post(c.url(follower, "/v1/sessions")) as r:  # forwarded
                assert r.status == 200, await r.text()
                opened = await r.json()
            client_id = opened["client_id"]
            assert client_id.startswith(f"{opened['index']}-")
            session = {"X-Raftkv-Client": client_id, "X-Raftkv-Seq": "1"}
            unknown = {"X-Raftkv-Client": f"{opened['index']}-guessed", "X-Raftkv-Seq": "1"}
            status, refused = await c.put(follower, "counter", b"0", headers=unknown)
            assert (status, refused["error"]) == (410, "session_expired"), refused
            status, first = await c.put(leader, "counter", b"1", headers=session)
            assert status == 200
            # The "response was lost": the client retries the same seq, via another node.
            async with c.client.put(
                c.url(follower, "/v1/kv/counter"), data=b"1", headers=session
            ) as r:
                assert r.status == 200
                assert r.headers["X-Raftkv-Duplicate"] == "true"
                retry = await r.json()
                assert retry["revision"] == first["revision"]  # answered, not re-applied
            async with c.client.get(c.url(leader, "/v1/watch?prefix=counter&from_revision=1")) as r:
                assert r.status == 200
                line = await r.content.readline()
                assert line.startswith(b"event: put")
            st = await c.status(leader)
            status, second = await c.put(
                leader,
                "counter",
                b"2",
                headers={**session, "X-Raftkv-Seq": "2", "X-Raftkv-Ack": "2"},
            )
            assert status == 200 and second["revision"] == first["revision"] + 1
            assert st["commit_index"] >= first["index"]

    run_async(main)


def test_watch_streams_events(tmp_path: Path) -> None:
    async def main() -> None:
        async with LocalCluster(tmp_path) as c:
            leader = await c.leader()
            follower = next(n for n in c.ids if n != leader)
            await c.put(leader, "app/a", b"1")
            async with c.client.get(c.url(follower, "/v1/watch?prefix=app/&from_revision=1")) as r:
                assert r.headers["Content-Type"].startswith("text/event-stream")
                await c.put(leader, "other", b"x")
                await c.put(leader, "app/b", b"2")
                async with c.client.delete(c.url(leader, "/v1/kv/app/a")) as d:
                    assert d.status == 200
                events = await _read_sse(r, 3)
            assert [(e["type"], e["kv"]["key"]) for e in events] == [
                ("put", "app/a"),
                ("put", "app/b"),
                ("delete", "app/a"),
            ]
            assert events[2]["prev_kv"]["value"] == "1"
            assert events[0]["revision"] < events[1]["revision"] < events[2]["revision"]

    run_async(main)


def test_events_stream_state_trace_and_messages(tmp_path: Path) -> None:
    async def main() -> None:
        async with LocalCluster(tmp_path) as c:
            leader = await c.leader()
            async with c.client.get(c.url(leader, "/v1/events")) as r:
                assert r.status == 200
                first = (await _read_sse(r, 1))[0]
                assert first["kind"] == "state" and first["node"] == leader
                assert first["role"] == "leader" and isinstance(first["log"], list)
                assert isinstance(first["ts"], float)
                await c.put(leader, "x", b"99")
                seen: dict[str, list[dict[str, Any]]] = {}
                while not _has_all(seen):
                    ev = (await _read_sse(r, 1))[0]
                    seen.setdefault(ev["kind"], []).append(ev)
            texts = [e["text"] for s in seen["state"] for e in s["log"]]
            assert "SET x=99" in texts
            committed = [
                e
                for s in seen["state"]
                for e in s["log"]
                if e["text"] == "SET x=99" and e["committed"]
            ]
            assert committed
            assert {"event", "term", "index", "detail"} <= set(seen["trace"][0])
            types = {(m["dir"], m["type"]) for m in seen["message"]}
            assert ("send", "AppendEntries") in types
            assert ("recv", "AppendEntriesResponse") in types

    run_async(main)


def _has_all(seen: dict[str, list[dict[str, Any]]]) -> bool:
    if not {"state", "trace", "message"} <= set(seen):
        return False
    types = {(m["dir"], m["type"]) for m in seen["message"]}
    set_committed = any(
        e["text"] == "SET x=99" and e["committed"] for s in seen["state"] for e in s["log"]
    )
    return set_committed and {("send", "AppendEntries"), ("recv", "AppendEntriesResponse")} <= types


def test_metrics_parse(tmp_path: Path) -> None:
    async def main() -> None:
        async with LocalCluster(tmp_path) as c:
            leader = await c.leader()
            for i in range(3):
                await c.put(leader, f"m{i}", b"v")
            async with c.client.get(c.url(leader, "/metrics")) as r:
                assert r.status == 200
                text = await r.text()
            samples = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for fam in text_string_to_metric_families(text)
                for s in fam.samples
            }
            assert samples[("raftkv_role", (("role", "leader"),))] == 1.0
            assert samples[("raftkv_term", ())] >= 1
            assert samples[("raftkv_commit_index", ())] >= 4
            assert samples[("raftkv_applied_index", ())] >= 4
            assert samples[("raftkv_proposals_total", ())] >= 3
            assert samples[("raftkv_fsync_seconds_count", ())] >= 3
            assert samples[("raftkv_messages_sent_total", (("type", "AppendEntries"),))] >= 3
            assert ("raftkv_pending_requests", (("kind", "write"),)) in samples
            assert ("raftkv_apply_seconds_count", ()) in samples
            assert samples[("raftkv_members", (("role", "voter"),))] == 3.0
            assert samples[("raftkv_members", (("role", "learner"),))] == 0.0
            assert samples[("raftkv_snapshot_index", ())] == 0.0  # no compaction yet
            assert samples[("raftkv_snapshots_total", (("kind", "taken"),))] == 0.0

    run_async(main)


def test_leader_transfer(tmp_path: Path) -> None:
    async def main() -> None:
        async with LocalCluster(tmp_path) as c:
            leader = await c.leader()
            target = next(n for n in c.ids if n != leader)
            other = next(n for n in c.ids if n not in (leader, target))
            async with c.client.post(c.url(other, "/v1/leader/transfer"), json={"to": target}) as r:
                assert r.status == 200, await r.text()
                assert (await r.json())["leader"] == target
            assert await c.leader() == target
            async with c.client.post(c.url(target, "/v1/leader/transfer")) as r:
                assert r.status == 200, await r.text()
                new = (await r.json())["leader"]
            assert new != target
            status, _ = await c.put(other, "after", b"transfer")
            assert status == 200

    run_async(main)


async def _read_sse(resp: Any, n: int) -> list[dict[str, Any]]:
    """The next n data events of an SSE response, decoded."""
    out: list[dict[str, Any]] = []
    while len(out) < n:
        line = await asyncio.wait_for(resp.content.readline(), 10)
        assert line, "stream ended"
        if line.startswith(b"data: "):
            out.append(json.loads(line[6:]))
    return out
