"""The demo server without a browser or node processes: fake nodes (in-process aiohttp apps
speaking the node API) behind the real broker, stream followers, control and web app."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from raftkv.cli.demo import add_parser
from raftkv.demo import DemoOptions, serve_demo
from raftkv.demo.broker import EventBroker
from raftkv.demo.control import ClusterControl, Timing
from raftkv.demo.streams import NodeStreams
from raftkv.demo.supervisor import DemoError, make_plan
from raftkv.demo.webapp import build_app

pytestmark = pytest.mark.timeout(60)


def state(node: str, role: str, term: int = 2, last: int = 1) -> dict[str, Any]:
    log = [{"index": 1, "term": 1, "kind": "noop", "text": "no-op", "committed": True}]
    return {
        "node": node,
        "ts": 0.0,
        "kind": "state",
        "role": role,
        "term": term,
        "leader": "n1",
        "commit_index": 1,
        "applied_index": 1,
        "last_index": last,
        "log": log,
    }


@dataclass
class FakeNode:
    """Enough of a node's HTTP API for the demo server; records what it was asked."""

    id: str
    role: str
    read_error: bool = False
    net_bodies: list[dict[str, Any]] = field(default_factory=list)
    puts: list[bytes] = field(default_factory=list)
    events: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    streams_opened: int = 0
    url: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/events", self.on_events)
        app.router.add_post("/v1/debug/net", self.on_net)
        app.router.add_put("/v1/kv/{key}", self.on_put)
        app.router.add_get("/v1/kv/{key}", self.on_get)
        app.router.add_post("/v1/leader/transfer", self.on_transfer)
        return app

    async def on_events(self, request: web.Request) -> web.StreamResponse:
        self.streams_opened += 1
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(f"data: {json.dumps(state(self.id, self.role))}\n\n".encode())
        while (item := await self.events.get()) is not None:
            await resp.write(f": keepalive\n\ndata: {item}\n\n".encode())
        return resp  # None: end the stream, as a restarting node would

    async def on_net(self, request: web.Request) -> web.StreamResponse:
        self.net_bodies.append(await request.json())
        return web.json_response({"isolate": False, "drop_to": [], "delay_ms": 0})

    async def on_put(self, request: web.Request) -> web.StreamResponse:
        self.puts.append(await request.read())
        return web.json_response({"revision": 7, "index": 4})

    async def on_get(self, request: web.Request) -> web.StreamResponse:
        assert request.query["consistency"] == "linearizable"
        if self.read_error:
            return web.json_response(
                {"error": "no_quorum", "message": "could not confirm the read with a quorum"},
                status=503,
            )
        return web.Response(body=b"99", headers={"X-Raftkv-Revision": "7"})

    async def on_transfer(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        return web.json_response({"leader": body.get("to", "n2"), "term": 3})


class FakeProcs:
    def __init__(self, nodes: dict[str, FakeNode]) -> None:
        self.nodes = nodes
        self.running = dict.fromkeys(nodes, True)

    def node_ids(self) -> list[str]:
        return list(self.nodes)

    def http_url(self, node_id: str) -> str:
        return self.nodes[node_id].url

    def is_running(self, node_id: str) -> bool:
        return self.running[node_id]

    def pid(self, node_id: str) -> int | None:
        return 1000 + int(node_id[1:]) if self.running[node_id] else None

    async def crash(self, node_id: str) -> int:
        self.running[node_id] = False
        return 1000 + int(node_id[1:])

    async def start(self, node_id: str) -> int:
        self.running[node_id] = True
        return 2000 + int(node_id[1:])


@dataclass
class Rig:
    client: TestClient[web.Request, web.Application]
    nodes: dict[str, FakeNode]
    procs: FakeProcs
    broker: EventBroker
    control: ClusterControl

    async def post(self, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        resp = await self.client.post(path, json=body)
        doc: dict[str, Any] = await resp.json()
        return resp.status, doc


@asynccontextmanager
async def rig() -> AsyncIterator[Rig]:
    nodes = {"n1": FakeNode("n1", "leader"), "n2": FakeNode("n2", "follower")}
    servers = []
    for node in nodes.values():
        srv = TestServer(node.app())
        await srv.start_server()
        node.url = str(srv.make_url("")).rstrip("/")
        servers.append(srv)
    procs = FakeProcs(nodes)
    broker = EventBroker()
    async with aiohttp.ClientSession() as session:
        control = ClusterControl(procs, broker, session, Timing(slow=4.0))
        broker.cluster = control.cluster_json
        streams = NodeStreams(broker, lambda: {n: v.url for n, v in nodes.items()}, session)
        streams.start()
        async with TestClient(TestServer(build_app(control, broker))) as client:
            r = Rig(client, nodes, procs, broker, control)
            await until(lambda: all(broker.connected.get(n) for n in nodes))
            await until(lambda: len(broker.states) == 2)
            try:
                yield r
            finally:
                for node in nodes.values():
                    node.events.put_nowait(None)
                await streams.close()
    for srv in servers:
        await srv.close()


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


def run(test: Callable[[Rig], Awaitable[None]]) -> None:
    async def go() -> None:
        async with rig() as r:
            await test(r)

    asyncio.run(go())


class EventReader:
    """The browser's side of GET /api/events."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp

    async def next(self, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        async with asyncio.timeout(5.0):
            async for raw in self.resp.content:
                line = raw.decode().strip()
                if line.startswith("data: "):
                    ev: dict[str, Any] = json.loads(line[6:])
                    if match(ev):
                        return ev
        raise AssertionError("the event stream ended")


def test_snapshot_then_live_events_then_reconnect() -> None:
    async def body(r: Rig) -> None:
        resp = await r.client.get("/api/events")
        assert resp.headers["Content-Type"] == "text/event-stream"
        events = EventReader(resp)
        cluster = await events.next(lambda e: e.get("event") == "cluster")
        assert [n["id"] for n in cluster["nodes"]] == ["n1", "n2"]
        assert cluster["slow"] == 4.0 and cluster["tick_ms"] == 200.0
        assert cluster["message_delay_ms"] == 75.0 and cluster["key"] == "X"
        st = await events.next(lambda e: e.get("kind") == "state" and e["node"] == "n1")
        assert st["role"] == "leader"
        # a node event is passed through untouched
        msg = {"node": "n2", "kind": "message", "dir": "send", "type": "Heartbeat", "from": "n2"}
        r.nodes["n2"].events.put_nowait(json.dumps(msg))
        got = await events.next(lambda e: e.get("kind") == "message")
        assert got == msg
        # the node's stream ends (a restart): the demo says so and reconnects
        r.nodes["n2"].events.put_nowait(None)
        down = await events.next(lambda e: e.get("event") == "stream")
        assert down["node"] == "n2" and down["connected"] is False
        up = await events.next(lambda e: e.get("event") == "stream")
        assert up["node"] == "n2" and up["connected"] is True
        assert r.nodes["n2"].streams_opened == 2
        resp.close()

    run(body)


def test_set_goes_to_the_leader_and_is_narrated() -> None:
    async def body(r: Rig) -> None:
        sub = r.broker.subscribe()
        status, doc = await r.post("/api/set", {"value": "99"})
        assert status == 200
        assert doc["ok"] is True and doc["node"] == "n1" and doc["index"] == 4
        assert r.nodes["n1"].puts == [b"99"] and r.nodes["n2"].puts == []
        status, doc = await r.post("/api/set", {"value": "5", "via": "n2"})
        assert doc["node"] == "n2" and r.nodes["n2"].puts == [b"5"]
        seen = []
        while not sub.queue.empty():
            item = sub.queue.get_nowait()
            assert item is not None
            ev = json.loads(item)
            if ev.get("event") == "client":
                seen.append((ev["op"], ev["phase"], ev["node"]))
        assert seen[:2] == [("SET", "sent", "n1"), ("SET", "ok", "n1")]
        status, doc = await r.post("/api/set", {"value": ""})
        assert status == 409 and "1 to 64" in doc["message"]
        status, doc = await r.post("/api/set", {"value": "1", "via": "n9"})
        assert status == 409 and "no node 'n9'" in doc["message"]

    run(body)


def test_read_reports_the_value_or_the_clusters_refusal() -> None:
    async def body(r: Rig) -> None:
        status, doc = await r.post("/api/read", {})
        assert (status, doc["ok"], doc["value"], doc["revision"]) == (200, True, "99", 7)
        r.nodes["n1"].read_error = True
        status, doc = await r.post("/api/read", {"via": "n1"})
        assert status == 200  # the refusal is the cluster's answer, shown as is
        assert doc["ok"] is False and doc["status"] == 503 and doc["error"] == "no_quorum"
        assert "quorum" in doc["message"]

    run(body)


def test_network_faults_go_to_each_node() -> None:
    async def body(r: Rig) -> None:
        status, doc = await r.post("/api/net", {"action": "isolate_leader"})
        assert status == 200 and doc["node"] == "n1" and doc["isolated"] == ["n1"]
        assert r.nodes["n1"].net_bodies[-1] == {"heal": True, "isolate": True, "delay_ms": 0.0}
        assert r.nodes["n2"].net_bodies[-1]["isolate"] is False
        status, doc = await r.post("/api/net", {"action": "isolate_follower"})
        assert doc["node"] == "n2" and doc["isolated"] == ["n1", "n2"]
        status, doc = await r.post("/api/net", {"action": "heal"})
        assert doc["isolated"] == []
        assert all(not n.net_bodies[-1]["isolate"] for n in r.nodes.values())
        status, doc = await r.post("/api/slow", {"factor": 3})
        assert status == 200 and doc["extra_delay_ms"] == 200.0  # 2 x max(75, 100)
        assert all(n.net_bodies[-1]["delay_ms"] == 200.0 for n in r.nodes.values())
        status, doc = await r.post("/api/slow", {"factor": 9})
        assert status == 409
        status, doc = await r.post("/api/net", {"action": "explode"})
        assert status == 409 and "unknown network action" in doc["message"]

    run(body)


def test_no_leader_to_isolate_is_refused() -> None:
    async def body(r: Rig) -> None:
        r.broker.states["n1"] = state("n1", "candidate")
        status, doc = await r.post("/api/net", {"action": "isolate_leader"})
        assert status == 409 and "no leader" in doc["message"]

    run(body)


def test_crash_restart_and_transfer() -> None:
    async def body(r: Rig) -> None:
        status, doc = await r.post("/api/crash", {"node": "n2"})
        assert status == 200 and doc["pid"] == 1002 and not r.procs.running["n2"]
        status, doc = await r.post("/api/crash", {"node": "n2"})
        assert status == 409 and "not running" in doc["message"]
        cluster = (await (await r.client.get("/api/cluster")).json())["nodes"]
        assert [n["running"] for n in cluster] == [True, False]
        status, doc = await r.post("/api/restart", {"node": "n2"})
        assert status == 200 and doc["pid"] == 2002 and r.procs.running["n2"]
        status, doc = await r.post("/api/transfer", {"to": "n2"})
        assert doc["ok"] is True and doc["leader"] == "n2" and doc["node"] == "n1"

    run(body)


def test_bad_requests_and_static_page() -> None:
    async def body(r: Rig) -> None:
        resp = await r.client.post("/api/set", data=b"not json")
        assert resp.status == 400 and (await resp.json())["ok"] is False
        resp = await r.client.post("/api/crash", json={})
        assert resp.status == 400 and '"node" is required' in (await resp.json())["message"]
        page = await r.client.get("/")
        html = await page.text()
        assert page.status == 200 and "/assets/app.js" in html
        for asset in ("app.js", "cards.js", "narrator.js", "wires.js", "style.css"):
            assert (await r.client.get(f"/assets/{asset}")).status == 200

    run(body)


def test_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        opts = DemoOptions(port=port, data_dir=tmp_path, open_browser=False)
        with pytest.raises(DemoError, match=f"port {port} on 127.0.0.1 is in use"):
            asyncio.run(serve_demo(opts, io.StringIO(), stop=asyncio.Event()))


def test_data_dir_of_another_size_is_refused(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, 3, 2.0)
    assert [n.id for n in plan.nodes] == ["n1", "n2", "n3"]
    assert len({p for n in plan.nodes for p in (n.raft_port, n.http_port)}) == 6
    assert "--allow-fault-injection" in plan.command(plan.nodes[0])
    assert make_plan(tmp_path, 3, 2.0).cluster_id == plan.cluster_id  # reused data
    with pytest.raises(DemoError, match="holds a 3-node demo cluster, not 5"):
        make_plan(tmp_path, 5, 2.0)


def test_parser() -> None:
    parser = argparse.ArgumentParser(prog="raftkv")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["demo"])
    assert (args.nodes, args.port, args.slow, args.no_browser, args.data_dir) == (
        3,
        8080,
        6.0,
        False,
        None,
    )
    args = parser.parse_args(["demo", "--nodes", "5", "--port", "0", "--slow", "1", "--no-browser"])
    assert (args.nodes, args.port, args.slow, args.no_browser) == (5, 0, 1.0, True)
    with pytest.raises(SystemExit):
        parser.parse_args(["demo", "--nodes", "0"])
