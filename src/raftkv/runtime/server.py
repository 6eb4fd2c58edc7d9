"""Run one node: storage, Raft loop, peer transport and HTTP API in one asyncio event loop.

    serve(settings)  starts everything and runs until SIGTERM/SIGINT (or `stop` is set, or
                     the task is cancelled), then shuts down gracefully: stop accepting HTTP,
                     end SSE streams, finish the Ready in flight, fail what is still pending
                     (503 unavailable), close the transport, close storage.
    run(settings)    the process entry point: logging to stderr, uvloop when available.

Nothing is written to stdout. One log line per role or leader change.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import random
import signal
import sys
from pathlib import Path

from aiohttp import web

from raftkv.core.config import Config
from raftkv.core.raft import RaftNode
from raftkv.errors import BadRequest, DiskError, RaftkvError
from raftkv.runtime.addresses import MEMBERS_FILE, AddressBook
from raftkv.runtime.admission import forward_key
from raftkv.runtime.clock import TickClock
from raftkv.runtime.events import EventHub
from raftkv.runtime.faults import NetFaults
from raftkv.runtime.forward import Forwarder
from raftkv.runtime.http_api import HttpApi
from raftkv.runtime.http_site import forwarder_ssl, make_site, url_scheme
from raftkv.runtime.kvhooks import ServerHooks, ServerStore
from raftkv.runtime.metrics import NodeMetrics
from raftkv.runtime.node import Inbox, RaftRuntime, ticker
from raftkv.runtime.settings import NodeSettings, open_storage
from raftkv.runtime.transport import PeerTransport
from raftkv.storage import Recovered, fsutil

log = logging.getLogger("raftkv.server")

HTTP_SHUTDOWN_TIMEOUT_S = 3.0
IDENTITY_FILE = "identity.json"


class NodeServer:
    """One started node. Use NodeServer.start() inside an AsyncExitStack that stops it."""

    def __init__(self, settings: NodeSettings) -> None:
        self.settings = settings
        self.http_port = settings.http[1]
        self.raft_port = settings.listen[1]
        self.node: RaftRuntime[ServerStore] | None = None
        self.book: AddressBook | None = None
        self._node_task: asyncio.Task[None] | None = None
        self._removed = asyncio.Event()  # set a grace period after our removal is applied

    @classmethod
    async def start(cls, settings: NodeSettings, stack: contextlib.AsyncExitStack) -> NodeServer:
        """Start every part; stack.aclose() stops them in the right order (even half-started).

        Callbacks run in reverse order of registration, so the shutdown sequence is: HTTP
        stops listening and streams end -> Ready loop finishes -> ticks stop -> transport
        closes -> HTTP handlers drain -> client sessions close -> storage closes.
        """
        self = cls(settings)
        sid = settings.node_id
        await asyncio.to_thread(_check_identity, settings)
        storage, recovered = await asyncio.to_thread(open_storage, settings)
        stack.callback(storage.close)
        if recovered.torn_tail:
            log.warning("%s: %s", sid, recovered.torn_tail)
        if recovered.lost_data:
            log.error("%s: %s", sid, recovered.lost_data)
        book = await asyncio.to_thread(load_address_book, settings)
        kv, raft = _restore(settings, recovered, book)
        # The address book (saved members, else --peers) says who the peers are.
        settings = dataclasses.replace(settings, peers=book.peers())
        self.settings, self.book = settings, book

        inbox = Inbox(TickClock(settings.tick_seconds))
        hub, metrics, faults = EventHub(sid), NodeMetrics(), NetFaults()
        transport = PeerTransport(settings, inbox.add_messages, faults, hub, metrics)
        book.on_change(lambda b: transport.set_peers(b.peers()))
        node: RaftRuntime[ServerStore] = RaftRuntime(
            raft,
            kv,
            storage,
            inbox=inbox,
            send=transport.send,
            hub=hub,
            metrics=metrics,
            hooks=ServerHooks(book, self._on_removed),
            policy=settings.snapshot_policy,
        )
        self.node = node
        forwarder = Forwarder(
            sid, settings.request_timeout_s + 1.0, forwarder_ssl(settings), forward_key(settings)
        )
        stack.push_async_callback(forwarder.close)
        api = HttpApi(settings, node, transport, faults, hub, metrics, forwarder, book=book)
        runner = web.AppRunner(
            api.app(),
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=HTTP_SHUTDOWN_TIMEOUT_S,
            keepalive_timeout=settings.security.idle_timeout_s,
        )
        await runner.setup()
        stack.push_async_callback(runner.cleanup)

        await transport.start()
        stack.push_async_callback(transport.close)
        self.raft_port = transport.port

        ticks = ticker(inbox, settings.tick_seconds, metrics.loop_lag.observe)
        tick_task = asyncio.create_task(ticks, name=f"tick-{sid}")
        stack.push_async_callback(_cancel, tick_task)
        self._node_task = asyncio.create_task(node.run(), name=f"raft-{sid}")
        stack.push_async_callback(self._stop_node)

        site = make_site(runner, api, node, settings)  # TLS, fast path, connection guard
        await site.start()
        self.http_port = _bound_port(runner, settings.http[1])
        stack.push_async_callback(_stop_http, site, api)
        log.info(
            "%s: serving HTTP on %s:%d, peers on %s:%d (cluster %s, term %d, log %d..%d)",
            sid,
            settings.http[0],
            self.http_port,
            settings.listen[0],
            self.raft_port,
            settings.cluster_id,
            raft.term,
            raft.log.first_index(),
            raft.log.last_index(),
        )
        return self

    async def wait(self, stop: asyncio.Event) -> None:
        """Until stop is set or the Ready loop ended on its own (a failure)."""
        assert self._node_task is not None
        stopper = asyncio.create_task(stop.wait())
        removed = asyncio.create_task(self._removed.wait())
        try:
            await asyncio.wait(
                {stopper, removed, self._node_task}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopper.cancel()
            removed.cancel()

    def _on_removed(self, index: int) -> None:
        """This node is not in the configuration applied at index: it was removed. Stay up a
        little (the last acknowledgements and, on a removed leader, the commit index it
        hands over must go out), then shut down."""
        grace = 2 * self.settings.election_timeout_seconds
        log.warning(
            "%s: removed from the cluster (configuration at index %d); shutting down in %.1fs",
            self.settings.node_id,
            index,
            grace,
        )
        asyncio.get_running_loop().call_later(grace, self._removed.set)

    @property
    def failed(self) -> BaseException | None:
        return None if self.node is None else self.node.failed

    async def _stop_node(self) -> None:
        if self.node is not None and self._node_task is not None:
            self.node.stop()
            await asyncio.shield(self._node_task)  # the Ready in flight completes


async def serve(
    settings: NodeSettings,
    *,
    ready_file: Path | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run one node until SIGTERM/SIGINT, or until `stop` is set when one is given (then no
    signal handlers are installed: the caller owns the lifecycle). Cancelling the task also
    shuts down gracefully. Raises DiskError if the node stopped because its disk failed.

    ready_file, if given, is written (atomically) once both listeners are up, with JSON
    {"id", "pid", "http", "raft"}.
    """
    own_signals = stop is None
    stop_event = stop if stop is not None else asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        server = await NodeServer.start(settings, stack)
        if own_signals:
            _install_signals(stop_event, stack)
        if ready_file is not None:
            await asyncio.to_thread(_write_ready_file, ready_file, settings, server)
        await server.wait(stop_event)
        log.info("%s: shutting down", settings.node_id)
    failure = server.failed
    if failure is not None:
        if isinstance(failure, DiskError):
            raise failure
        raise RuntimeError(f"node {settings.node_id} stopped after an internal error") from failure
    log.info("%s: stopped", settings.node_id)


def run(settings: NodeSettings, *, ready_file: Path | None = None) -> None:
    """Process entry point: serve until SIGTERM/SIGINT. Exits with status 1 after a failure."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO,
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    try:
        try:
            import uvloop  # noqa: PLC0415 (optional dependency)
        except ImportError:
            asyncio.run(serve(settings, ready_file=ready_file))
        else:
            uvloop.run(serve(settings, ready_file=ready_file))
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were installed
        log.info("%s: interrupted during startup", settings.node_id)
    except (RaftkvError, RuntimeError, OSError) as e:
        log.critical("%s: %s", settings.node_id, e)
        raise SystemExit(1) from e


# --- helpers -----------------------------------------------------------------------------


def load_address_book(settings: NodeSettings) -> AddressBook:
    """The saved address book (DATA_DIR/members.json: nodes that joined later, the starting
    configuration), with the addresses --peers gives taking precedence; on first start, one
    made from --peers (and saved)."""
    path = settings.data_dir / MEMBERS_FILE
    book = AddressBook.load(settings.node_id, path)
    if book is None:
        book = AddressBook(settings.node_id, settings.peers, path=path)
        book.save()
        return book
    for peer, addr in settings.peers.items():
        book.learn(peer, addr)
    return book


def _restore(
    settings: NodeSettings, rec: Recovered, book: AddressBook
) -> tuple[ServerStore, RaftNode]:
    """A fresh store (from the snapshot, if any) and a RaftNode holding the durable log.

    applied starts at the snapshot: the core hands the committed suffix out again in Readys,
    so the KvStore is rebuilt by the same apply path as live traffic.
    """
    config = Config(
        election_ticks=settings.election_ticks,
        heartbeat_ticks=settings.heartbeat_ticks,
        tick_us=round(settings.tick_seconds * 1_000_000),
    )
    snap = rec.snapshot
    kv = ServerStore(book)
    if snap is not None:
        kv.load_server_image(snap.data, snap.index)
    hs = rec.hard_state
    raft = RaftNode(
        settings.node_id,
        book.bootstrap.voters,
        config,
        random.Random(),
        hard_state=hs,
        entries=rec.entries,
        snapshot=snap,
        learners=book.bootstrap.learners,
    )
    if rec.entries or hs.term:
        log.info(
            "%s: recovered term %d, vote %s, commit %d, %d entries after index %d",
            settings.node_id,
            hs.term,
            hs.vote,
            hs.commit,
            len(rec.entries),
            snap.index if snap is not None else 0,
        )
    return kv, raft


def _check_identity(settings: NodeSettings) -> None:
    """A data dir belongs to one node of one cluster; refuse to start it as another."""
    path = settings.data_dir / IDENTITY_FILE
    mine = {"cluster_id": settings.cluster_id, "node_id": settings.node_id}
    if path.exists():
        try:
            found = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise DiskError(f"node {settings.node_id}: cannot read {path}: {e}", str(path)) from e
        if found != mine:
            raise BadRequest(
                f"{settings.data_dir} holds node {found.get('node_id')!r} of cluster "
                f"{found.get('cluster_id')!r}, not node {settings.node_id!r} of cluster "
                f"{settings.cluster_id!r}"
            )
        return
    _write_file(settings, path, json.dumps(mine) + "\n")


def _write_ready_file(path: Path, settings: NodeSettings, server: NodeServer) -> None:
    doc = {
        "id": settings.node_id,
        "pid": os.getpid(),
        "http": f"{url_scheme(settings)}://{settings.http[0]}:{server.http_port}",
        "raft": f"{settings.listen[0]}:{server.raft_port}",
    }
    _write_file(settings, path, json.dumps(doc) + "\n")


def _write_file(settings: NodeSettings, path: Path, text: str) -> None:
    """Write path atomically (creating its directory); DiskError names the node and file."""
    try:
        fsutil.durable_dir(path.parent)  # a new data dir must survive a power cut
        fsutil.atomic_write(path, text.encode())
    except OSError as e:
        raise fsutil.write_error(f"node {settings.node_id}", path, e) from e


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _stop_http(site: web.TCPSite, api: HttpApi) -> None:
    api.close_streams()
    await site.stop()


def _bound_port(runner: web.AppRunner, default: int) -> int:
    for addr in runner.addresses:
        if isinstance(addr, tuple) and len(addr) >= 2:
            return int(addr[1])
    return default


def _install_signals(stop: asyncio.Event, stack: contextlib.AsyncExitStack) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            continue
        stack.callback(loop.remove_signal_handler, sig)
