"""The live event stream of one node (GET /v1/events), for the browser demo.

Cheap by construction: producers check `hub.active` first and build nothing when nobody
listens; each event is serialized once and fanned out as a string; every subscriber has a
bounded queue and loses its oldest events, never blocking the node. Schema: docs/events.md.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from typing import Any

from raftkv.core.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    InstallSnapshot,
    Message,
    RequestVote,
    RequestVoteResponse,
)
from raftkv.core.types import Entry, EntryKind
from raftkv.errors import BadRequest
from raftkv.kv.commands import Cas, Delete, Put, Txn, decode_command

DEFAULT_QUEUE_SIZE = 2048
_TEXT_MAX = 40


class Subscription:
    """One listener: a bounded queue of serialized events; None means the hub closed."""

    def __init__(self, hub: EventHub, maxsize: int) -> None:
        self._hub = hub
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize)
        self.dropped = 0

    def offer(self, item: str | None) -> None:
        if self.queue.full():
            self.queue.get_nowait()  # lose the oldest event, never block the node
            self.dropped += 1
        self.queue.put_nowait(item)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_: object) -> None:
        self._hub.unsubscribe(self)


class EventHub:
    def __init__(self, node_id: str, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self.node_id = node_id
        self._queue_size = queue_size
        self._subs: list[Subscription] = []

    @property
    def active(self) -> bool:
        return bool(self._subs)

    def subscribe(self) -> Subscription:
        sub = Subscription(self, self._queue_size)
        self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def encode(self, kind: str, fields: dict[str, Any]) -> str:
        event = {"node": self.node_id, "ts": time.time() * 1000.0, "kind": kind}
        event.update(fields)
        return json.dumps(event, separators=(",", ":"))

    def publish(self, kind: str, fields: dict[str, Any]) -> None:
        if not self._subs:
            return
        data = self.encode(kind, fields)
        for sub in self._subs:
            sub.offer(data)

    def close(self) -> None:
        """Tell every subscriber the stream is over."""
        for sub in list(self._subs):
            sub.offer(None)


def message_fields(direction: str, msg: Message) -> dict[str, Any]:
    """The "message" event of msg; index = last entry index carried (or acked, or claimed)."""
    fields: dict[str, Any] = {
        "dir": direction,
        "type": type(msg).__name__,
        "from": msg.src,
        "to": msg.dst,
        "term": msg.term,
        "entries": 0,
        "index": 0,
    }
    match msg:
        case AppendEntries():
            fields["entries"] = len(msg.entries)
            fields["index"] = msg.prev_log_index + len(msg.entries)
            fields["commit"] = msg.commit
        case AppendEntriesResponse():
            fields["index"] = msg.index
            fields["success"] = msg.success
        case Heartbeat():
            fields["commit"] = msg.commit
        case RequestVote():
            fields["index"] = msg.last_log_index
            fields["pre_vote"] = msg.pre_vote
        case RequestVoteResponse():
            fields["granted"] = msg.granted
            fields["pre_vote"] = msg.pre_vote
        case InstallSnapshot():
            fields["index"] = msg.index
        case _:
            pass
    return fields


class EntryDescriber:
    """Human text for log entries ("SET x=99", "no-op"), cached by (index, term)."""

    def __init__(self, capacity: int = 256) -> None:
        self._cache: OrderedDict[tuple[int, int], str] = OrderedDict()
        self._capacity = capacity

    def describe(self, entry: Entry) -> str:
        key = (entry.index, entry.term)
        text = self._cache.get(key)
        if text is None:
            text = describe_entry(entry)
            self._cache[key] = text
            if len(self._cache) > self._capacity:
                self._cache.popitem(last=False)
        return text

    def entry_json(self, entry: Entry, commit_index: int) -> dict[str, Any]:
        return {
            "index": entry.index,
            "term": entry.term,
            "kind": entry.kind.name.lower(),
            "text": self.describe(entry),
            "committed": entry.index <= commit_index,
        }


def describe_entry(entry: Entry) -> str:
    if entry.kind is EntryKind.NOOP:
        return "no-op"
    if entry.kind is EntryKind.CONFIG:
        return "config change"
    try:
        command, _ = decode_command(entry.data)
    except BadRequest:
        return "invalid command"
    match command:
        case Put(key=key, value=value, prev_revision=prev):
            cond = "" if prev is None else f" if rev={prev}"
            return f"SET {_short(key)}={_text(value)}{cond}"
        case Delete(key=key, prev_revision=prev):
            cond = "" if prev is None else f" if rev={prev}"
            return f"DEL {_short(key)}{cond}"
        case Cas(key=key, expected=expected, new=new):
            old = "<absent>" if expected is None else _text(expected)
            return f"CAS {_short(key)}: {old} -> {_text(new)}"
        case Txn(compares=compares, success=success, failure=failure):
            return f"TXN {len(compares)} compares, {len(success)}/{len(failure)} ops"
    return "command"


def _text(value: bytes) -> str:
    return _short(value[: _TEXT_MAX * 4].decode("utf-8", "replace"))


def _short(text: str) -> str:
    return text if len(text) <= _TEXT_MAX else text[: _TEXT_MAX - 1] + "…"
