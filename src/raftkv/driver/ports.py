"""What the driver needs from the world, as small interfaces (hashicorp/raft's FSM, LogStore,
SnapshotStore and Transport). The asyncio runtime and the simulator each provide them: real
files and sockets and threads, or a simulated file system, network and virtual time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from raftkv.core.messages import Message
from raftkv.core.types import Entry, HardState, Snapshot, SoftState, TraceEvent

T = TypeVar("T")
R_co = TypeVar("R_co", covariant=True)
T_contra = TypeVar("T_contra", contravariant=True)


class LogStore(Protocol):
    """The durable Raft log and its snapshot files (raftkv.storage.LogStorage). Called from
    the driver's thread, one call at a time, except write_snapshot_file() (safe on another
    thread meanwhile). Every method raises DiskError when the disk fails (then `failed` says
    why and nothing more is accepted), or DiskFull when there is no room for what was asked
    (nothing was written and the storage still works)."""

    @property
    def failed(self) -> BaseException | None: ...

    def check_room(self, entries: int, data_bytes: int) -> None:
        """Raise DiskFull unless that many entries with that much data can be appended."""

    def check_snapshot_room(self, nbytes: int) -> None:
        """Raise DiskFull unless a snapshot of about nbytes can be stored."""

    def append(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        """Write (not yet durably) the hard state and entries; entries replace the log from
        entries[0].index on."""

    def sync(self) -> None:
        """Everything appended before the call is durable when it returns."""

    def install_snapshot(self, snapshot: Snapshot) -> None:
        """Durably replace the log up to snapshot.index (the leader's snapshot)."""

    def write_snapshot_file(self, snapshot: Snapshot) -> None:
        """Durably store our own snapshot's file (off the loop); the log is unchanged."""

    def mark_snapshot(self, snapshot: Snapshot) -> None:
        """Our own snapshot's file is durable: record that the log now starts after it
        (durable on return)."""

    def compact(self, index: int) -> None:
        """Delete log files holding nothing after the snapshot at index."""


class SnapshotSource(Protocol):
    """A frozen view of the state machine at one index: encode() may run off the loop (in
    another thread, or later in simulated time) while the machine keeps applying."""

    def encode(self) -> bytes: ...


class MachinePort(Protocol[R_co]):
    """The replicated application (the KV store, or an embedded app's machine). apply must
    be deterministic: every replica computes the same result from the same entries."""

    @property
    def applied_index(self) -> int: ...

    def apply(self, index: int, data: bytes) -> R_co: ...

    def apply_noop(self, index: int) -> None: ...

    def snapshot_view(self) -> SnapshotSource:
        """The state as of applied_index. Cheap: a view, not the encoding."""
        ...

    def install_snapshot(self, snapshot: Snapshot) -> None:
        """Replace everything by the leader's snapshot (applied_index becomes its index)."""


class Transport(Protocol):
    def send(self, messages: Sequence[Message]) -> None:
        """Queue messages for their peers; never blocks (a lost message is Raft's problem)."""


class Scheduler(Protocol):
    """Where slow work runs. sync: the log's sync (inline on the loop, or a simulated disk's
    latency). background: snapshot encoding and writing (a worker thread, or virtual time).
    done is called later on the driver's own thread (or immediately, for inline work)."""

    def sync(
        self, job: Callable[[], None], done: Callable[[BaseException | None], None]
    ) -> None: ...

    def background(
        self, job: Callable[[], None], done: Callable[[BaseException | None], None]
    ) -> None: ...


class Waiter(Protocol[T_contra]):
    """Who waits for a request: an asyncio.Future fits, so does a simulated client op."""

    def done(self) -> bool: ...

    def set_result(self, result: T_contra, /) -> None: ...

    def set_exception(self, exception: BaseException, /) -> None: ...


class Observer(Protocol):
    """Told what happened (logs, metrics, the event stream, the address book). Must not
    call back into the driver."""

    def soft_state(self, soft: SoftState, term: int) -> None: ...

    def trace(self, events: Sequence[TraceEvent]) -> None: ...

    def proposed(self, accepted: int, refused: int) -> None: ...

    def applied(self, entries: Sequence[Entry]) -> None: ...

    def snapshot_installed(self, snapshot: Snapshot) -> None: ...

    def snapshot_taken(self, snapshot: Snapshot) -> None: ...

    def snapshot_failed(self, index: int, error: BaseException) -> None: ...

    def no_room(self, error: BaseException, dropped: Message | None) -> None:
        """The disk is full: proposals were refused (dropped None) or a message carrying
        entries or a snapshot was dropped unacknowledged (the leader sends it again)."""
