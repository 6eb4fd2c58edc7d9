"""Log entries and watch events cannot be part of a reference cycle (frozen, scalar fields or
untracked structs), so the cyclic GC does not track them: a node holding a large log and
watch history would otherwise walk them all in every full collection, stalling its event
loop for 100-300 ms at a time with a 100 MB store."""

from __future__ import annotations

import gc

import msgspec

from raftkv.core.types import Entry, EntryKind
from raftkv.kv.model import Event, EventType, KeyValue


def test_entries_and_events_are_not_tracked_by_the_gc() -> None:
    entry = Entry(1, 1, EntryKind.CONFIG, b"x")
    kv = KeyValue("k", b"v", 1, 1, 1)
    event = Event(EventType.PUT, kv, kv)
    decoded = msgspec.msgpack.decode(msgspec.msgpack.encode([entry]), type=list[Entry])
    assert not any(gc.is_tracked(o) for o in (entry, kv, event, decoded[0]))
