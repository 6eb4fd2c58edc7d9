"""Leadership events an application can subscribe to.

Events are produced inside the Ready loop, so delivery never blocks it: every stream has a
bounded queue that loses its oldest events, and listeners are plain callbacks that must return
quickly (an exception in one is logged and ignored).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from raftkv.core.types import Role, SoftState

log = logging.getLogger("raftkv.embed")

DEFAULT_STREAM_SIZE = 256


class EventKind(enum.Enum):
    BECAME_LEADER = "became_leader"  # this node won an election (its log may still be applying)
    LOST_LEADERSHIP = "lost_leadership"  # this node was leader and is not any more
    LEADER_CHANGED = "leader_changed"  # the known leader changed (leader may be None: unknown)


@dataclass(frozen=True, slots=True)
class LeadershipEvent:
    kind: EventKind
    node: str  # the node that observed it (this one)
    term: int
    leader: str | None


Listener = Callable[[LeadershipEvent], None]


class EventStream:
    """`async for event in stream`; ends when the node stops or the stream is closed."""

    def __init__(self, bus: EventBus, maxsize: int) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[LeadershipEvent | None] = asyncio.Queue(maxsize)
        self.dropped = 0

    def offer(self, event: LeadershipEvent | None) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(event)

    def close(self) -> None:
        self._bus.unsubscribe(self)
        self.offer(None)

    def __aiter__(self) -> AsyncIterator[LeadershipEvent]:
        return self

    async def __anext__(self) -> LeadershipEvent:
        event = await self._queue.get()
        if event is None:
            self._bus.unsubscribe(self)
            raise StopAsyncIteration
        return event

    async def next(self, timeout: float | None = None) -> LeadershipEvent | None:
        """The next event, or None once the stream ended or timeout seconds passed."""
        try:
            return await asyncio.wait_for(self.__anext__(), timeout)
        except (StopAsyncIteration, TimeoutError):
            return None


class EventBus:
    def __init__(self, node_id: str) -> None:
        self._node_id = node_id
        self._streams: list[EventStream] = []
        self._listeners: list[Listener] = []
        self._role = Role.FOLLOWER
        self._leader: str | None = None
        self.closed = False

    def subscribe(self, maxsize: int = DEFAULT_STREAM_SIZE) -> EventStream:
        stream = EventStream(self, maxsize)
        if self.closed:
            stream.offer(None)
        else:
            self._streams.append(stream)
        return stream

    def unsubscribe(self, stream: EventStream) -> None:
        if stream in self._streams:
            self._streams.remove(stream)

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call listener(event) for every event; returns a function that removes it."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def on_soft_state(self, soft: SoftState, term: int) -> None:
        """Turn a role / leader change of the core into events."""
        events: list[EventKind] = []
        if soft.role is Role.LEADER and self._role is not Role.LEADER:
            events.append(EventKind.BECAME_LEADER)
        elif soft.role is not Role.LEADER and self._role is Role.LEADER:
            events.append(EventKind.LOST_LEADERSHIP)
        if soft.leader != self._leader:
            events.append(EventKind.LEADER_CHANGED)
        self._role, self._leader = soft.role, soft.leader
        for kind in events:
            self.publish(LeadershipEvent(kind, self._node_id, term, soft.leader))

    def publish(self, event: LeadershipEvent) -> None:
        for stream in self._streams:
            stream.offer(event)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("%s: an event listener raised (ignored)", self._node_id)

    def close(self) -> None:
        """The node stopped: end every stream."""
        self.closed = True
        for stream in self._streams:
            stream.offer(None)
        self._streams.clear()
