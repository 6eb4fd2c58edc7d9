"""Ready: everything the core wants done, as data. The shell does it in this order:

1. persist snapshot (if any: it replaces the whole log), hard_state and entries (one fsync;
   entries may overwrite a log suffix),
2. send messages (these may also go out before the persist completes),
   then send messages_after_persist (they promise durable state: votes, acks),
3. restore the state machine from snapshot (if any), apply committed entries in order, and
   answer read_states once applied >= index,
4. call advance(ready).
"""

from __future__ import annotations

from dataclasses import dataclass

from raftkv.core.messages import Message
from raftkv.core.types import Entry, HardState, ReadState, Snapshot, SoftState, TraceEvent


@dataclass(frozen=True, slots=True)
class Ready:
    hard_state: HardState | None
    entries: tuple[Entry, ...]
    messages: tuple[Message, ...]
    messages_after_persist: tuple[Message, ...]
    committed: tuple[Entry, ...]
    read_states: tuple[ReadState, ...]
    soft_state: SoftState | None
    events: tuple[TraceEvent, ...]
    # A snapshot installed from the leader: it replaces our log and state machine.
    snapshot: Snapshot | None = None

    def must_persist(self) -> bool:
        return self.hard_state is not None or bool(self.entries) or self.snapshot is not None
