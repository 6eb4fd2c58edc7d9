"""Fan-out of events to the browsers: one merged stream of every node's events plus the
demo's own ("kind": "demo"), with a snapshot for a page that connects late.

Node events are passed through untouched (the JSON documented in docs/events.md). The broker
remembers each node's latest "state" event and whether its stream is connected, so a new
subscriber first gets the cluster as it is now, then the live events. Every subscriber has a
bounded queue and loses its oldest events if it falls behind; it never slows anyone.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

QUEUE_SIZE = 4096

Snapshot = Callable[[], dict[str, Any]]


class BrowserSubscription:
    def __init__(self, broker: EventBroker) -> None:
        self._broker = broker
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(QUEUE_SIZE)
        self.dropped = 0

    def offer(self, item: str | None) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(item)

    def __enter__(self) -> BrowserSubscription:
        return self

    def __exit__(self, *_: object) -> None:
        self._broker.unsubscribe(self)


class EventBroker:
    def __init__(self) -> None:
        self._subs: list[BrowserSubscription] = []
        self.states: dict[str, dict[str, Any]] = {}  # node id -> latest "state" event
        self.connected: dict[str, bool] = {}  # node id -> its event stream is open
        self.cluster: Snapshot = dict  # the demo's "cluster" snapshot (set by the app)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def subscribe(self) -> BrowserSubscription:
        """A new subscription, primed with the current snapshot."""
        sub = BrowserSubscription(self)
        for item in self.snapshot():
            sub.offer(item)
        self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: BrowserSubscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def snapshot(self) -> list[str]:
        items = [_dump(demo_event("cluster", **self.cluster()))]
        for node_id, up in self.connected.items():
            items.append(_dump(demo_event("stream", node=node_id, connected=up)))
        items.extend(_dump(ev) for ev in self.states.values())
        return items

    def node_event(self, raw: str) -> None:
        """One event line from a node's /v1/events (JSON text); bad JSON is ignored."""
        try:
            ev = json.loads(raw)
        except ValueError:
            return
        if not isinstance(ev, dict):
            return
        if ev.get("kind") == "state" and isinstance(ev.get("node"), str):
            self.states[ev["node"]] = ev
        self._fan_out(raw)

    def stream_status(self, node_id: str, connected: bool) -> None:
        if self.connected.get(node_id) is connected:
            return
        self.connected[node_id] = connected
        self.publish("stream", node=node_id, connected=connected)

    def publish(self, event: str, **fields: Any) -> None:
        """A demo event (client requests and answers, faults, processes, settings)."""
        self._fan_out(_dump(demo_event(event, **fields)))

    def close(self) -> None:
        for sub in list(self._subs):
            sub.offer(None)

    def _fan_out(self, data: str) -> None:
        for sub in self._subs:
            sub.offer(data)


def demo_event(event: str, **fields: Any) -> dict[str, Any]:
    return {"kind": "demo", "event": event, "ts": time.time() * 1000.0, **fields}


def _dump(ev: dict[str, Any]) -> str:
    return json.dumps(ev, separators=(",", ":"))
