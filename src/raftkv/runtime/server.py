"""Run one KV server node: a NodeShell (shell.py) with the address book and the KV HTTP API.

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
import signal
import ssl
import sys
from collections.abc import Callable
from pathlib import Path

from raftkv.errors import DiskError, RaftkvError
from raftkv.kv.results import Result
from raftkv.runtime.addresses import MEMBERS_FILE, AddressBook
from raftkv.runtime.admission import forward_key
from raftkv.runtime.conn_guard import Budget, ConnectionGuard
from raftkv.runtime.forward import ForwardClient
from raftkv.runtime.http_api import HttpApi
from raftkv.runtime.http_server import HttpServer
from raftkv.runtime.kvhooks import ServerHooks, ServerStore
from raftkv.runtime.node import RaftRuntime
from raftkv.runtime.settings import NodeSettings
from raftkv.runtime.shell import KV_SERVER, HttpFront, NodeShell, Parts, write_file
from raftkv.security.tls import http_client_context
from raftkv.storage import Recovered

log = logging.getLogger("raftkv.server")


class NodeServer:
    """One started KV server node. Use NodeServer.start() inside an AsyncExitStack that
    stops it. The node itself is a NodeShell (shell.py); this adds the address book, the KV
    HTTP API and the shutdown after this node's removal."""

    def __init__(self, settings: NodeSettings) -> None:
        self.settings = settings
        self.shell: NodeShell[ServerStore, Result] | None = None
        self.book: AddressBook | None = None
        self._removed = asyncio.Event()  # set a grace period after our removal is applied

    @classmethod
    async def start(cls, settings: NodeSettings, stack: contextlib.AsyncExitStack) -> NodeServer:
        """Start every part; stack.aclose() stops them in the right order (even half-started)."""
        self = cls(settings)

        async def build(recovered: Recovered) -> Parts[ServerStore]:
            book = await asyncio.to_thread(load_address_book, settings)
            book.on_change(self._set_peers)
            self.book = book
            # The address book (saved members, else --peers) says who the peers are.
            self.settings = dataclasses.replace(settings, peers=book.peers())
            boot = book.bootstrap
            hooks = ServerHooks(book, self._on_removed)
            return Parts(ServerStore(book), boot.voters, boot.learners, self.settings, hooks)

        self.shell = await NodeShell.start(
            stack,
            settings,
            KV_SERVER,
            build,
            front=self._front,
            policy=settings.snapshot_policy,
        )
        return self

    def _book(self) -> AddressBook:
        assert self.book is not None
        return self.book

    def _set_peers(self, book: AddressBook) -> None:
        if self.shell is not None:
            self.shell.transport.set_peers(book.peers())

    def _front(self, shell: NodeShell[ServerStore, Result]) -> HttpFront:
        return kv_front(shell, self._book())

    @property
    def node(self) -> RaftRuntime[ServerStore, Result] | None:
        return None if self.shell is None else self.shell.runtime

    @property
    def http_port(self) -> int:
        return self.settings.http[1] if self.shell is None else self.shell.http_port

    @property
    def raft_port(self) -> int:
        return self.settings.listen[1] if self.shell is None else self.shell.raft_port

    async def wait(self, stop: asyncio.Event) -> None:
        """Until stop is set, this node was removed, or the Ready loop ended on its own."""
        assert self.shell is not None and self.shell.task is not None
        stopper = asyncio.create_task(stop.wait())
        removed = asyncio.create_task(self._removed.wait())
        try:
            await asyncio.wait(
                {stopper, removed, self.shell.task}, return_when=asyncio.FIRST_COMPLETED
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
        return None if self.shell is None else self.shell.failed


def kv_front(shell: NodeShell[ServerStore, Result], book: AddressBook) -> HttpServer:
    """The KV server's HTTP front: the API (http_api.py) on the node's HTTP server, which
    forwards to the leader through one pooled client (closed with the server)."""
    settings = shell.settings
    forwarder = ForwardClient(
        settings.node_id,
        settings.cluster_id,
        book.get,
        shell.faults,
        ssl_context=forwarder_ssl(settings),
        peer_key=forward_key(settings),
    )
    api = HttpApi(
        settings,
        shell.runtime,
        shell.transport,
        shell.faults,
        shell.hub,
        shell.metrics,
        forwarder,
        book=book,
    )
    server = HttpServer(
        settings, api.router(), api.peers, close_streams=api.close_streams, after=forwarder.close
    )
    for budget in Budget:
        shell.metrics.http_connections.labels(budget.value).set_function(
            _count_of(server.guard, budget)
        )
    return server


def _count_of(guard: ConnectionGuard, budget: Budget) -> Callable[[], float]:
    return lambda: float(guard.count(budget))


def forwarder_ssl(settings: NodeSettings) -> ssl.SSLContext | None:
    """What the follower->leader forwarder speaks: verify the leader against the cluster CA
    and present this node's own certificate (the leader trusts forwarded identities only
    from node certificates)."""
    tls = settings.security.tls
    if tls is None:
        return None
    return http_client_context(tls.ca, tls.cert, tls.key)


def url_scheme(settings: NodeSettings) -> str:
    return "https" if settings.security.tls is not None else "http"


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


def _write_ready_file(path: Path, settings: NodeSettings, server: NodeServer) -> None:
    doc = {
        "id": settings.node_id,
        "pid": os.getpid(),
        "http": f"{url_scheme(settings)}://{settings.http[0]}:{server.http_port}",
        "raft": f"{settings.listen[0]}:{server.raft_port}",
    }
    write_file(settings, path, json.dumps(doc) + "\n")


def _install_signals(stop: asyncio.Event, stack: contextlib.AsyncExitStack) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            continue
        stack.callback(loop.remove_signal_handler, sig)
