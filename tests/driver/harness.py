"""Ports for driving one NodeDriver by hand: a log store that records every call (and can be
told to fail or run out of room), a scheduler whose syncs and background jobs complete only
when the test says so, a transport and an observer that record what they are given."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from raftkv.core.config import Config
from raftkv.core.messages import Message
from raftkv.core.raft import RaftNode
from raftkv.core.types import Entry, HardState, Snapshot, SoftState, TraceEvent
from raftkv.driver import NodeDriver, SnapshotPolicy
from raftkv.errors import DiskFull
from raftkv.kv.results import Result
from raftkv.kv.store import KvStore

Job = tuple[Callable[[], None], Callable[[BaseException | None], None]]


class Log:
    """A LogStore that records calls; `durable` is what a sync made durable."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.appended: list[tuple[HardState | None, tuple[Entry, ...]]] = []
        self.durable: list[tuple[HardState | None, tuple[Entry, ...]]] = []
        self.failed: BaseException | None = None
        self.full = False  # no room for anything
        self.snapshots_full = False  # no room for snapshot files only
        self.snapshot_files: list[Snapshot] = []
        self.marked: list[int] = []

    def check_room(self, entries: int, data_bytes: int) -> None:
        if self.full:
            raise DiskFull("no room (test)")

    def check_snapshot_room(self, nbytes: int) -> None:
        if self.full:
            raise DiskFull("no room (test)")

    def append(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        self.calls.append("append")
        self.appended.append((hard_state, tuple(entries)))

    def sync(self) -> None:
        self.calls.append("sync")
        self.durable = list(self.appended)

    def install_snapshot(self, snapshot: Snapshot) -> None:
        self.calls.append("install_snapshot")
        self.durable = list(self.appended)

    def write_snapshot_file(self, snapshot: Snapshot) -> None:
        self.calls.append("write_snapshot_file")
        if self.full or self.snapshots_full:
            raise DiskFull("no room for the snapshot (test)")
        self.snapshot_files.append(snapshot)

    def mark_snapshot(self, snapshot: Snapshot) -> None:
        self.calls.append("mark_snapshot")
        self.marked.append(snapshot.index)

    def compact(self, index: int) -> None:
        self.calls.append("compact")


class Scheduler:
    """Syncs and background jobs wait in queues until complete_syncs()/complete_jobs()."""

    def __init__(self) -> None:
        self.syncs: list[Job] = []
        self.jobs: list[Job] = []

    def sync(self, job: Callable[[], None], done: Callable[[BaseException | None], None]) -> None:
        self.syncs.append((job, done))

    def background(
        self, job: Callable[[], None], done: Callable[[BaseException | None], None]
    ) -> None:
        self.jobs.append((job, done))

    @staticmethod
    def _complete(queue: list[Job]) -> int:
        """Complete what is queued now (completions may queue more: for the next call)."""
        batch = queue[:]
        del queue[:]
        for job, callback in batch:
            try:
                job()
            except Exception as e:
                callback(e)
            else:
                callback(None)
        return len(batch)

    def complete_syncs(self) -> int:
        return self._complete(self.syncs)

    def complete_jobs(self) -> int:
        return self._complete(self.jobs)


@dataclass
class Wire:
    """Transport and Observer: what left, in order, and what was reported."""

    sent: list[Message] = field(default_factory=list)
    applied_indexes: list[int] = field(default_factory=list)
    refused: list[BaseException] = field(default_factory=list)
    failed_snapshots: list[int] = field(default_factory=list)
    taken: list[int] = field(default_factory=list)

    def send(self, messages: Sequence[Message]) -> None:
        self.sent.extend(messages)

    def soft_state(self, soft: SoftState, term: int) -> None:
        pass

    def trace(self, events: Sequence[TraceEvent]) -> None:
        pass

    def proposed(self, accepted: int, refused: int) -> None:
        pass

    def applied(self, entries: Sequence[Entry]) -> None:
        self.applied_indexes.extend(e.index for e in entries)

    def snapshot_installed(self, snapshot: Snapshot) -> None:
        pass

    def snapshot_taken(self, snapshot: Snapshot) -> None:
        self.taken.append(snapshot.index)

    def snapshot_failed(self, index: int, error: BaseException) -> None:
        self.failed_snapshots.append(index)

    def no_room(self, error: BaseException, dropped: Message | None) -> None:
        self.refused.append(error)


class Waiter:
    def __init__(self) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.finished = False

    def done(self) -> bool:
        return self.finished

    def set_result(self, result: Any) -> None:
        self.result, self.finished = result, True

    def set_exception(self, exc: BaseException) -> None:
        self.error, self.finished = exc, True


@dataclass
class Rig:
    driver: NodeDriver[Result]
    log: Log
    scheduler: Scheduler
    wire: Wire


def single_node(policy: SnapshotPolicy | None = None) -> Rig:
    """A one-voter node (it commits alone once its own write is durable)."""
    return rig("n1", ("n1",), policy=policy)


def rig(node_id: str, voters: tuple[str, ...], *, policy: SnapshotPolicy | None = None) -> Rig:
    raft = RaftNode(node_id, voters, Config(), random.Random(1))
    log, scheduler, wire = Log(), Scheduler(), Wire()
    driver: NodeDriver[Result] = NodeDriver(
        raft,
        KvStore(),
        log,
        wire,
        scheduler,
        wire,
        policy=policy or SnapshotPolicy(entries=0),
        rng=random.Random(2),
    )
    return Rig(driver, log, scheduler, wire)


def elect(r: Rig) -> None:
    """Make the one-voter node leader (its vote is durable once its sync completes)."""
    r.driver.raft.campaign()
    r.driver.run()
    while r.scheduler.complete_syncs():
        r.driver.run()
    assert r.driver.is_leader
