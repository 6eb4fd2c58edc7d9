"""The demo's web server: the static page, the merged event stream, and the control API.

Routes
  GET  /                      the page (src/raftkv/web/index.html); /assets/* its CSS and JS
  GET  /api/events            SSE: a snapshot (cluster, stream status, each node's state), then
                              every node's events (docs/events.md) and the demo's own events
  GET  /api/cluster           the nodes (pid, running, isolated) and the cluster's timing
  POST /api/set      {"value": "99", "via": "auto"|"n1"}   PUT X through that node
  POST /api/read     {"via": "auto"|"n1"}                  linearizable GET of X
  POST /api/net      {"action": "isolate_leader"|"isolate_follower"|"isolate"|"split"|"heal",
                      "node": "n2"}
  POST /api/crash    {"node": "n1"}   kill -9        POST /api/restart {"node": "n1"}
  POST /api/transfer {"to": "n2"}     (or {} for the most caught-up follower)
  POST /api/slow     {"factor": 2.5}  slow motion: extra delay on every peer message

Answers are JSON. A client request reports what the node said ({"ok", "status", "error",
"message", ...}) with HTTP 200 even when the cluster refused it: that refusal is the lesson.
An action refused by the demo itself (unknown node, no leader to isolate) is 409.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from raftkv.demo.broker import EventBroker
from raftkv.demo.control import ActionFailed, ClusterControl

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
KEEPALIVE_S = 10.0
NO_CACHE = {"Cache-Control": "no-store"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_app(
    control: ClusterControl, broker: EventBroker, web_dir: Path = WEB_DIR
) -> web.Application:
    app = web.Application(middlewares=[_errors])
    api = DemoApi(control, broker, web_dir)
    r = app.router
    r.add_get("/", api.index)
    r.add_get("/api/events", api.events)
    r.add_get("/api/cluster", api.cluster)
    r.add_post("/api/set", api.set_value)
    r.add_post("/api/read", api.read_value)
    r.add_post("/api/net", api.net)
    r.add_post("/api/crash", api.crash)
    r.add_post("/api/restart", api.restart)
    r.add_post("/api/transfer", api.transfer)
    r.add_post("/api/slow", api.slow)
    r.add_static("/assets/", web_dir, append_version=False)
    return app


class DemoApi:
    def __init__(self, control: ClusterControl, broker: EventBroker, web_dir: Path) -> None:
        self.control = control
        self.broker = broker
        self.web_dir = web_dir

    async def index(self, request: web.Request) -> web.StreamResponse:
        index = self.web_dir / "index.html"
        if not index.is_file():
            raise web.HTTPInternalServerError(text=f"the demo page is missing: {index}")
        return web.FileResponse(index, headers=NO_CACHE)

    async def events(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no", **NO_CACHE}
        )
        await resp.prepare(request)
        try:
            with self.broker.subscribe() as sub:
                while True:
                    try:
                        item = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_S)
                    except TimeoutError:
                        await resp.write(b": keepalive\n\n")
                        continue
                    chunk: list[str] = []
                    while item is not None:
                        chunk.append(f"data: {item}\n\n")
                        if sub.queue.empty():
                            break
                        item = sub.queue.get_nowait()
                    if chunk:
                        await resp.write("".join(chunk).encode())
                    if item is None:
                        break
        except (ConnectionError, OSError):
            pass
        return resp

    async def cluster(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.control.cluster_json())

    async def set_value(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        value = _str(body, "value", required=True)
        assert value is not None
        return web.json_response(await self.control.set_value(value, _str(body, "via")))

    async def read_value(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        return web.json_response(await self.control.read_value(_str(body, "via")))

    async def net(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        action = _str(body, "action", required=True)
        assert action is not None
        return web.json_response(await self.control.net_action(action, _str(body, "node")))

    async def crash(self, request: web.Request) -> web.StreamResponse:
        node = _str(await _body(request), "node", required=True)
        assert node is not None
        return web.json_response(await self.control.crash(node))

    async def restart(self, request: web.Request) -> web.StreamResponse:
        node = _str(await _body(request), "node", required=True)
        assert node is not None
        return web.json_response(await self.control.restart(node))

    async def transfer(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        return web.json_response(await self.control.transfer(_str(body, "to")))

    async def slow(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        factor = body.get("factor")
        if isinstance(factor, bool) or not isinstance(factor, int | float):
            raise web.HTTPBadRequest(text='"factor" must be a number')
        return web.json_response(await self.control.set_factor(float(factor)))


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ActionFailed as e:
        return web.json_response({"ok": False, "error": "refused", "message": str(e)}, status=409)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return web.json_response(
            {"ok": False, "error": e.reason.lower().replace(" ", "_"), "message": e.text or ""},
            status=e.status,
        )


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        doc = json.loads(raw)
    except ValueError:
        raise web.HTTPBadRequest(text="the body must be a JSON object") from None
    if not isinstance(doc, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return doc


def _str(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise web.HTTPBadRequest(text=f'"{name}" is required')
        return None
    if not isinstance(value, str):
        raise web.HTTPBadRequest(text=f'"{name}" must be a string')
    return value
