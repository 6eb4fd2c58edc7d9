"""NodeShell: one node assembled from its parts, for the KV server and the embedded library
alike (hashicorp/raft's NewRaft: configuration, state machine, storage, transport).

    shell = await NodeShell.start(stack, settings, kind, build, front=..., hooks=..., policy=...)

start() checks the data dir's identity, opens the storage (recovering the log and the last
snapshot), asks `build` for the state machine and the first configuration (after both, so a
data dir of another node is refused before anything is written to it), restores the machine
from the snapshot, and starts the core (RaftNode), the tick clock, the peer transport, the
Ready loop (RaftRuntime) and the HTTP front. Each part registers its own stop on the stack,
so stack.aclose() stops them in the right order, even after a half-finished start:

    HTTP stops listening, streams end -> Ready loop finishes its cycle -> ticks stop ->
    peer transport closes -> HTTP handlers drain -> (the shell's own parts) -> storage closes

What stays with each user: the KV server keeps its address book and HTTP API
(runtime/server.py), the library its Python API and event bus (embed/node.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol

from typing_extensions import TypeVar as DefaultTypeVar

from raftkv.core.config import Config
from raftkv.core.raft import RaftNode
from raftkv.core.types import NodeId
from raftkv.driver import MachinePort, SnapshotPolicy
from raftkv.errors import BadRequest, DiskError, Timeout
from raftkv.runtime.clock import TickClock
from raftkv.runtime.events import EventHub
from raftkv.runtime.faults import NetFaults
from raftkv.runtime.metrics import NodeMetrics
from raftkv.runtime.node import Inbox, NodeHooks, NodeStopped, RaftRuntime, ticker
from raftkv.runtime.settings import NodeSettings, open_storage
from raftkv.runtime.transport import PeerTransport
from raftkv.storage import Recovered, fsutil

log = logging.getLogger("raftkv.shell")

IDENTITY_FILE = "identity.json"
# What identity.json says a data dir holds: a KV server's log (no "kind", as written before
# kinds existed) or an embedded application's ("kind": "embedded").
KV_SERVER = "KV server"
EMBEDDED = "embedded"

M = DefaultTypeVar("M", bound=MachinePort[Any], default=Any)
R = DefaultTypeVar("R", default=Any)


@dataclass(frozen=True, slots=True)
class Parts(Generic[M]):
    """What a shell's user brings: its state machine, the cluster's first configuration
    (the log's configuration counts once it holds one), the settings to run with, and its
    hooks around the driver."""

    machine: M
    voters: tuple[NodeId, ...]
    learners: tuple[NodeId, ...]
    settings: NodeSettings
    hooks: NodeHooks | None = None


class HttpFront(Protocol):
    """The node's HTTP listener (the KV API, or the library's forwarding routes)."""

    async def start(self) -> int:
        """Listen; the bound port."""

    def close_streams(self) -> None:
        """End long-lived answers (SSE) so shutdown does not wait for them."""

    async def stop(self) -> None:
        """Stop listening and close idle connections."""

    async def drain(self) -> None:
        """Finish (or cancel, after a grace period) the requests in flight."""


class NodeShell(Generic[M, R]):
    """One started node: its settings, runtime, transport and observability parts."""

    def __init__(
        self,
        settings: NodeSettings,
        runtime: RaftRuntime[M, R],
        transport: PeerTransport,
        hub: EventHub,
        metrics: NodeMetrics,
        faults: NetFaults,
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.transport = transport
        self.hub = hub
        self.metrics = metrics
        self.faults = faults
        self.http_port = settings.http[1]
        self.raft_port = settings.listen[1]
        self.task: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls,
        stack: contextlib.AsyncExitStack,
        settings: NodeSettings,
        kind: str,
        build: Callable[[Recovered], Awaitable[Parts[M]]],
        *,
        front: Callable[[NodeShell[M, R]], HttpFront],
        policy: SnapshotPolicy | None = None,
        faults: NetFaults | None = None,
    ) -> NodeShell[M, R]:
        """Start every part (see the module docstring); stack.aclose() stops them."""
        nid = settings.node_id
        await asyncio.to_thread(check_identity, settings, kind)
        storage, recovered = await asyncio.to_thread(open_storage, settings)
        stack.callback(storage.close)
        if recovered.torn_tail:
            log.warning("%s: %s", nid, recovered.torn_tail)
        if recovered.lost_data:
            log.error("%s: %s", nid, recovered.lost_data)
        parts = await build(recovered)
        settings = parts.settings
        raft = _recover(settings, recovered, parts)

        inbox = Inbox(TickClock(settings.tick_seconds))
        hub, metrics = EventHub(nid), NodeMetrics()
        faults = faults if faults is not None else NetFaults()
        transport = PeerTransport(settings, inbox.add_messages, faults, hub, metrics)
        runtime: RaftRuntime[M, R] = RaftRuntime(
            raft,
            parts.machine,
            storage,
            inbox=inbox,
            send=transport.send,
            hub=hub,
            metrics=metrics,
            hooks=parts.hooks,
            policy=policy,
        )
        self = cls(settings, runtime, transport, hub, metrics, faults)
        http = front(self)
        stack.push_async_callback(http.drain)
        await transport.start()
        stack.push_async_callback(transport.close)
        self.raft_port = transport.port
        ticks = ticker(inbox, settings.tick_seconds, metrics.loop_lag.observe)
        tick_task = asyncio.create_task(ticks, name=f"tick-{nid}")
        stack.push_async_callback(_cancel, tick_task)
        self.task = asyncio.create_task(runtime.run(), name=f"raft-{nid}")
        stack.push_async_callback(self._stop_runtime)
        self.http_port = await http.start()
        stack.push_async_callback(_stop_http, http)
        log.info(
            "%s: serving HTTP on %s:%d, peers on %s:%d (%s, cluster %s, term %d, log %d..%d)",
            nid,
            settings.http[0],
            self.http_port,
            settings.listen[0],
            self.raft_port,
            kind,
            settings.cluster_id,
            raft.term,
            raft.first_index,
            raft.last_index,
        )
        return self

    @property
    def failed(self) -> BaseException | None:
        """Why the Ready loop ended on its own (a DiskError, or a bug), if it did."""
        return self.runtime.failed

    async def _stop_runtime(self) -> None:
        if self.task is not None:
            self.runtime.stop()
            await asyncio.shield(self.task)  # the Ready in flight completes


def _recover(settings: NodeSettings, rec: Recovered, parts: Parts[Any]) -> RaftNode:
    """The state machine restored from the snapshot, and a RaftNode holding the durable log.
    applied starts at the snapshot: the core hands the committed suffix out again in Readys,
    so the machine is rebuilt by the same apply path as live traffic."""
    if rec.snapshot is not None:
        parts.machine.install_snapshot(rec.snapshot)
    config = Config(
        election_ticks=settings.election_ticks,
        heartbeat_ticks=settings.heartbeat_ticks,
        tick_us=round(settings.tick_seconds * 1_000_000),
    )
    hs = rec.hard_state
    if rec.entries or hs.term:
        log.info(
            "%s: recovered term %d, vote %s, commit %d, %d entries after index %d",
            settings.node_id,
            hs.term,
            hs.vote,
            hs.commit,
            len(rec.entries),
            rec.snapshot.index if rec.snapshot is not None else 0,
        )
    return RaftNode(
        settings.node_id,
        parts.voters,
        config,
        random.Random(),
        hard_state=hs,
        entries=rec.entries,
        snapshot=rec.snapshot,
        learners=parts.learners,
    )


def check_identity(settings: NodeSettings, kind: str) -> None:
    """A data dir belongs to one node of one cluster, and holds one kind of log (a KV
    server's or an embedded application's): refuse to open it as anything else."""
    path = settings.data_dir / IDENTITY_FILE
    mine: dict[str, str] = {"cluster_id": settings.cluster_id, "node_id": settings.node_id}
    if kind != KV_SERVER:
        mine["kind"] = kind
    if path.exists():
        try:
            found = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise DiskError(f"node {settings.node_id}: cannot read {path}: {e}", str(path)) from e
        if found != mine:
            raise BadRequest(
                f"{settings.data_dir} holds node {found.get('node_id')!r} of cluster "
                f"{found.get('cluster_id')!r} (a {found.get('kind', KV_SERVER)} node), not to "
                f"{kind} node {settings.node_id!r} of cluster {settings.cluster_id!r}"
            )
        return
    write_file(settings, path, json.dumps(mine) + "\n")


def write_file(settings: NodeSettings, path: Path, text: str) -> None:
    """Write path atomically (creating its directory); DiskError names the node and file."""
    try:
        fsutil.durable_dir(path.parent)  # a new data dir must survive a power cut
        fsutil.atomic_write(path, text.encode())
    except OSError as e:
        raise fsutil.write_error(f"node {settings.node_id}", path, e) from e


async def wait_applied(runtime: RaftRuntime[Any, Any], index: int, deadline: float) -> None:
    """Until runtime has applied index (a read barrier's index, a membership change's): Timeout
    at the loop time deadline, NodeStopped if the node stops meanwhile."""
    loop = asyncio.get_running_loop()
    with runtime.watcher() as changed:
        while runtime.applied_index < index:
            if not runtime.running:
                raise NodeStopped(f"node {runtime.id} has stopped")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise Timeout(f"{runtime.id} did not apply index {index} in time")
            changed.clear()
            with contextlib.suppress(TimeoutError):
                # watchers fire on apply; the poll covers snapshot installs
                await asyncio.wait_for(changed.wait(), min(remaining, 0.05))


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _stop_http(http: HttpFront) -> None:
    http.close_streams()
    await http.stop()
