"""Ready: everything the core wants done, as data. ready() hands it out and takes it as done:
the core never waits for the shell. The driver (raftkv.driver) carries it out in this order:

1. send `messages`: they promise nothing that is not durable yet, so they may leave at once
   (a leader's appends go out while its own write of the same entries is in flight);
2. restore the state machine from `restore` (a snapshot already durable here), then apply
   `committed` in order: committed entries that are durable here, so a node's state machine
   never runs ahead of its own log; answer `read_states` once applied >= their index;
3. write `persist`: storage writes are asynchronous (etcd's AsyncStorageWrites). Once the
   write is durable the driver calls `RaftNode.persisted(persist.ack)` and sends
   `persist.after_sync` (votes, acknowledgements: promises about durable state).

Persist.must_sync says whether the write must be made durable before anything depends on it
(entries, a snapshot, a new term or vote). A write that only moves the commit index need not
be synced, nor even written at once: the commit index is relearned from the leader.
after_sync messages wait for EVERY write handed out so far, not only this one: a promise may
rest on an earlier write that is still in flight.
"""

from __future__ import annotations

from dataclasses import dataclass

from raftkv.core.messages import Message
from raftkv.core.types import Entry, HardState, ReadState, Snapshot, SoftState, TraceEvent


@dataclass(frozen=True, slots=True)
class Stable:
    """The acknowledgement of one write: hand it back to RaftNode.persisted() once durable.

    index/term: the last entry the write made durable (or the snapshot's); 0/0 when it wrote
    no entries. snapshot: the write installed the leader's snapshot at index."""

    index: int
    term: int
    snapshot: bool = False


@dataclass(frozen=True, slots=True)
class Persist:
    """One storage write: a snapshot (it replaces the log), then the hard state and entries
    (which replace the log from entries[0].index on), as one batch."""

    hard_state: HardState | None
    entries: tuple[Entry, ...]
    snapshot: Snapshot | None
    must_sync: bool
    after_sync: tuple[Message, ...]
    ack: Stable | None  # None: nothing to acknowledge (no entries, no snapshot)

    def writes_data(self) -> bool:
        return self.hard_state is not None or bool(self.entries) or self.snapshot is not None


@dataclass(frozen=True, slots=True)
class Ready:
    messages: tuple[Message, ...]
    persist: Persist | None
    committed: tuple[Entry, ...]
    read_states: tuple[ReadState, ...]
    soft_state: SoftState | None
    events: tuple[TraceEvent, ...]
    # The leader's snapshot, durable here: the state machine restarts from it before applying
    # `committed` (which continue it).
    restore: Snapshot | None = None
