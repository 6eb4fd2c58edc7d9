"""TCP peer transport: one outbound connection per peer, one inbound server, wire frames.

Outbound, per peer: a bounded queue (the oldest message is dropped on overflow: Raft
tolerates loss) drained by a writer task that puts everything due into one frame. A writer
(re)connects with exponential backoff and exchanges handshakes first: it sends (cluster id,
node id) and expects the peer's own handshake back. A slow or dead peer only fills its own
queue; send() never blocks or awaits.

Links never die. Any failure to dial, handshake or write (whatever it raises: uvloop raises
RuntimeError when a peer resets a connection before the handshake is written) backs off and
redials; and the link task is supervised: if it ends for any reason while the transport is
open and the peer still a member, it is restarted. A link with no live connection is "down":
logged once per streak (and once when it comes back), and reported per peer by link_state()
(GET /v1/status) and the raftkv_peer_link_up / raftkv_peer_link_failures metrics.

Inbound: each connection must start with a valid handshake from a known peer of the same
cluster; anything else (wrong cluster, garbage, an unknown node) is logged and the connection
closed, and the node keeps running. Messages must come from the handshaken peer and be
addressed to us, else they are dropped.

With TLS (settings.security.tls) both directions use mutual TLS with the cluster CA, and the
certificate must be the node's own: CN = the node id in the raftkv handshake, OU = node. A node
of another CA fails the TLS handshake; a client certificate, or another node's certificate
under a false id, is refused after it. At most max_peer_connections inbound connections are
served at once; the TLS and raftkv handshakes must finish within handshake_timeout_s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

from raftkv.core.messages import Message
from raftkv.errors import PeerError, ProtocolError, TooLarge, WrongCluster
from raftkv.runtime.events import EventHub, message_fields
from raftkv.runtime.faults import NetFaults
from raftkv.runtime.metrics import NodeMetrics
from raftkv.runtime.settings import NodeSettings, PeerAddress
from raftkv.security.tls import check_node_cert, peer_client_context, peer_server_context
from raftkv.wire import (
    Frame,
    FrameDecoder,
    Handshake,
    MessageBatch,
    check_handshake,
    encode_chunked,
    encode_handshake,
    encode_messages,
)

log = logging.getLogger("raftkv.transport")

CONNECT_TIMEOUT_S = 2.0
# A connection whose sent data stays unacknowledged this long (at least; 2 election timeouts
# if longer) is aborted by the kernel (TCP_USER_TIMEOUT) and redialed. Without it, messages
# written during a silent partition (packets dropped, no RST) wait for TCP's exponentially
# backed-off retransmissions: a node cut off for 45 s rejoined 25 s after the network healed.
UNACKED_TIMEOUT_MIN_S = 2.0
BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 2.0
STABLE_S = 1.0  # after a connection up this long, redial at once
READ_CHUNK = 256 * 1024
WRITE_HIGH_WATER = 4 * 1024 * 1024
REJECTION_LOG_INTERVAL_S = 30.0

Deliver = Callable[[list[Message]], None]


@dataclass(frozen=True, slots=True)
class LinkState:
    """What a node knows of its outbound link to one peer (GET /v1/status "link")."""

    connected: bool
    down_since: float | None  # Unix time the link went down; None while connected
    last_error: str | None  # why the last attempt or connection failed, if one did
    failures: int  # failed dials, lost connections and restarts of the link, in all

    def as_json(self) -> dict[str, object]:
        return {
            "state": "connected" if self.connected else "down",
            "down_since": self.down_since,
            "last_error": self.last_error,
            "failures": self.failures,
        }


@dataclass(slots=True, eq=False)  # identity-hashed: links go in sets
class _Link:
    """The outbound side towards one peer. Queue items are (due time, message)."""

    peer: str
    host: str
    port: int
    queue: deque[tuple[float, Message]]
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    writer: asyncio.StreamWriter | None = None  # set while connected and handshaken
    broken: bool = False  # the current connection saw EOF or an error
    # Invariant: down_since is None exactly while writer is set (a live, handshaken link).
    down_since: float | None = field(default_factory=time.time)
    last_error: str | None = None
    failures: int = 0  # in all (the metric counts the same)
    logged_down: bool = False  # this down streak was logged (once per streak)
    restarts: int = 0  # times the supervisor restarted the task
    task: asyncio.Task[None] | None = None
    restart: asyncio.TimerHandle | None = None  # a pending restart of the task


class PeerTransport:
    def __init__(
        self,
        settings: NodeSettings,
        deliver: Deliver,
        faults: NetFaults,
        hub: EventHub,
        metrics: NodeMetrics,
    ) -> None:
        self._settings = settings
        self._id = settings.node_id
        self._deliver = deliver
        self._faults = faults
        self._hub = hub
        self._metrics = metrics
        self._rng = random.Random()
        self._links = {
            peer: _Link(peer, addr.raft_host, addr.raft_port, deque())
            for peer, addr in settings.peers.items()
            if peer != settings.node_id
        }
        self._server: asyncio.Server | None = None
        self._inbound: set[_Inbound] = set()
        self._inbound_from: dict[str, _Inbound] = {}  # each peer's newest one
        self._rejections: dict[tuple[str, str], tuple[float, int]] = {}
        self._closing = False
        self._security = settings.security
        tls = settings.security.tls
        self._server_ssl: ssl.SSLContext | None = None
        self._client_ssl: ssl.SSLContext | None = None
        if tls is not None:
            self._server_ssl = peer_server_context(tls)
            self._client_ssl = peer_client_context(tls)
        self.port: int = settings.listen[1]  # the bound port (differs when listen port is 0)
        self._unacked_timeout_s = max(UNACKED_TIMEOUT_MIN_S, 2 * settings.election_timeout_seconds)

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        host, port = self._settings.listen
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Inbound(self),
            host,
            port,
            ssl=self._server_ssl,
            ssl_handshake_timeout=self._security.handshake_timeout_s if self._server_ssl else None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        for link in self._links.values():
            self._start_link(link)

    async def close(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        tasks = [link.task for link in self._links.values() if link.task is not None]
        for link in self._links.values():
            if link.restart is not None:
                link.restart.cancel()
        for task in tasks:
            task.cancel()
        for conn in list(self._inbound):
            conn.close()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    def set_peers(self, peers: Mapping[str, PeerAddress]) -> None:
        """Membership changed: open links to new peers, re-dial moved ones, close the links
        of peers that are gone (their queued messages are dropped). Inbound connections are
        accepted from exactly the peers with a link."""
        wanted = {p: a for p, a in peers.items() if p != self._id}
        for peer in [p for p in self._links if p not in wanted]:
            self._close_link(self._links.pop(peer))
            self._metrics.forget_link(peer)
            log.info("%s: forgot peer %s", self._id, peer)
        for peer, addr in wanted.items():
            link = self._links.get(peer)
            if link is not None and (link.host, link.port) == addr.raft:
                continue
            if link is not None:
                self._close_link(link)
            link = _Link(peer, addr.raft_host, addr.raft_port, deque())
            self._links[peer] = link
            if self._server is not None and not self._closing:
                self._start_link(link)
            log.info("%s: peer %s is at %s:%d", self._id, peer, addr.raft_host, addr.raft_port)

    def _close_link(self, link: _Link) -> None:
        for _, msg in link.queue:
            self._drop(msg)
        link.queue.clear()
        if link.restart is not None:
            link.restart.cancel()
        if link.task is not None:
            link.task.cancel()
        if link.writer is not None:
            link.writer.close()

    def connected(self, peer: str) -> bool:
        link = self._links.get(peer)
        return link is not None and link.writer is not None and not link.broken

    def link_state(self, peer: str) -> LinkState | None:
        """The outbound link to peer; None if peer has no link (this node, or not a member)."""
        link = self._links.get(peer)
        if link is None:
            return None
        return LinkState(self.connected(peer), link.down_since, link.last_error, link.failures)

    # --- link supervision ---------------------------------------------------------------

    def _start_link(self, link: _Link) -> None:
        link.restart = None
        self._metrics.bind_link(link.peer, lambda: float(self.connected(link.peer)))
        task = asyncio.create_task(self._run_link(link), name=f"link-{link.peer}")
        task.add_done_callback(lambda t: self._link_ended(link, t))
        link.task = task

    def _current(self, link: _Link) -> bool:
        """link is still wanted: the transport is open and link is its peer's link."""
        return not self._closing and self._links.get(link.peer) is link

    def _link_ended(self, link: _Link, task: asyncio.Task[None]) -> None:
        """The supervisor: a link task that ends while its link is wanted is restarted."""
        if not self._current(link):
            return  # closed on purpose (transport close, peer forgotten or moved)
        exc = None if task.cancelled() else task.exception()
        why = "cancelled" if task.cancelled() else _why(exc) if exc else "returned"
        link.restarts += 1
        delay = min(BACKOFF_MIN_S * 2**link.restarts, BACKOFF_MAX_S)
        log.error(
            "%s: the link task to peer %s ended (%s); restarting it in %.2fs",
            self._id,
            link.peer,
            why,
            delay,
            exc_info=exc,
        )
        self._link_down(link, f"link task ended: {why}")
        loop = asyncio.get_running_loop()
        link.restart = loop.call_later(delay, self._restart_link, link)

    def _restart_link(self, link: _Link) -> None:
        if self._current(link):
            self._start_link(link)

    def _link_down(self, link: _Link, why: str) -> None:
        """Account for one failure of link; log the first of a streak."""
        link.failures += 1
        link.last_error = why
        self._metrics.link_failures.labels(link.peer).inc()
        if link.down_since is None:
            link.down_since = time.time()
        if not link.logged_down:
            link.logged_down = True
            log.warning(
                "%s: no link to peer %s at %s:%d: %s (redialing with backoff up to %gs)",
                self._id,
                link.peer,
                link.host,
                link.port,
                why,
                BACKOFF_MAX_S,
            )

    def _link_up(self, link: _Link, writer: asyncio.StreamWriter) -> None:
        if link.logged_down and link.down_since is not None:
            log.info(
                "%s: link to peer %s is up (down %.1fs, %d failures in all; last: %s)",
                self._id,
                link.peer,
                time.time() - link.down_since,
                link.failures,
                link.last_error,
            )
        link.writer, link.broken = writer, False
        link.down_since, link.logged_down = None, False

    # --- outbound ---------------------------------------------------------------------

    def send(self, msgs: Sequence[Message]) -> None:
        """Hand msgs to their peers; never blocks. Blocked or overflowing traffic is dropped.

        Fast path: a connected, idle link with nothing delayed gets its frame written at once
        (no task switch); otherwise the messages queue for the link's writer task.
        """
        if not msgs:
            return
        hub = self._hub
        batches: dict[_Link, list[Message]] = {}
        for msg in msgs:
            link = self._links.get(msg.dst)
            if link is None or self._faults.blocks(msg.dst) or self._faults.loses():
                self._drop(msg)
                continue
            self._metrics.sent[type(msg).__name__].inc()
            if hub.active:
                hub.publish("message", message_fields("send", msg))
            copies = [msg, msg] if self._faults.duplicates() else [msg]
            batch = batches.get(link)
            if batch is None:
                batches[link] = copies
            else:
                batch.extend(copies)
        if not batches:
            return
        delay = self._faults.delay_seconds + self._settings.message_delay_seconds
        due = asyncio.get_running_loop().time() + delay
        limit = self._settings.peer_queue_size
        for link, batch in batches.items():
            writer = link.writer
            if (
                delay <= 0
                and not link.queue
                and writer is not None
                and not link.broken
                and writer.transport.get_write_buffer_size() < WRITE_HIGH_WATER
            ):
                self._write(link, writer, batch)
                continue
            link.queue.extend((due, msg) for msg in batch)
            while len(link.queue) > limit:
                self._drop(link.queue.popleft()[1])
            link.wake.set()

    def _drop(self, msg: Message) -> None:
        self._metrics.dropped[type(msg).__name__].inc()
        if self._hub.active:
            self._hub.publish("message", message_fields("drop", msg))

    async def _run_link(self, link: _Link) -> None:
        """Dial, pump, redial, until the transport closes. Never raises: any failure (of any
        type) backs off and redials."""
        backoff = BACKOFF_MIN_S
        loop = asyncio.get_running_loop()
        while not self._closing:
            try:
                reader, writer = await self._dial(link)
            except Exception as e:  # any failure at all: back off and redial
                self._link_down(link, f"cannot connect: {_why(e)}")
                await asyncio.sleep(backoff * self._rng.uniform(0.5, 1.0))
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            self._link_up(link, writer)
            backoff = BACKOFF_MIN_S
            since = loop.time()
            why = "connection closed"
            try:
                await self._pump(link, reader, writer)
            except Exception as e:  # likewise
                why = f"connection lost: {_why(e)}"
            finally:
                link.writer = None
                writer.close()
            if self._closing:
                return
            self._link_down(link, why)
            if loop.time() - since < STABLE_S:  # a flapping peer: no tight redial loop
                await asyncio.sleep(BACKOFF_MIN_S * self._rng.uniform(0.5, 1.0))

    async def _dial(self, link: _Link) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        # The TCP connect alone is bounded by CONNECT_TIMEOUT_S (SYNs at 0 and 1 s): a peer
        # behind a silent partition is redialed soon after it heals, not after SYN backoff.
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(link.host, link.port), CONNECT_TIMEOUT_S
        )
        try:
            _abort_when_unacked(writer, self._unacked_timeout_s)
            if self._client_ssl is not None:
                await writer.start_tls(
                    self._client_ssl,
                    server_hostname=link.host,
                    ssl_handshake_timeout=self._security.handshake_timeout_s,
                )
                check_node_cert(writer.get_extra_info("peercert"), link.peer)
            writer.write(encode_handshake(self._settings.cluster_id, self._id))
            decoder = FrameDecoder(self._settings.max_frame_size)
            async with asyncio.timeout(self._security.handshake_timeout_s):
                frames: list[Frame] = []
                while not frames:
                    data = await reader.read(READ_CHUNK)
                    if not data:
                        raise ConnectionResetError("peer closed the connection during handshake")
                    frames = decoder.feed(data)
            reply = frames[0]
            if not isinstance(reply, Handshake):
                raise ProtocolError("peer did not answer with a handshake")
            check_handshake(reply, self._settings.cluster_id, link.peer)
        except BaseException:
            writer.close()
            raise
        return reader, writer

    async def _pump(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Write queued messages until the connection breaks. Invariant: FIFO per peer."""
        watcher = asyncio.create_task(self._watch_eof(link, reader))
        loop = asyncio.get_running_loop()
        try:
            while not self._closing and not link.broken:
                queue = link.queue
                if not queue:
                    link.wake.clear()
                    await link.wake.wait()
                    continue
                now = loop.time()
                wait = queue[0][0] - now
                if wait > 0:  # delayed delivery (fault injection or slow motion)
                    link.wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(link.wake.wait(), wait)
                    continue
                batch: list[Message] = []
                while queue and queue[0][0] <= now:
                    batch.append(queue.popleft()[1])
                if self._faults.blocks(link.peer):  # the fault began while these waited
                    for msg in batch:
                        self._drop(msg)
                    continue
                self._write(link, writer, batch)
                if link.broken:
                    break
                if writer.transport.get_write_buffer_size() > WRITE_HIGH_WATER:
                    await writer.drain()
        finally:
            watcher.cancel()

    def _write(self, link: _Link, writer: asyncio.StreamWriter, batch: list[Message]) -> None:
        """Write batch's frames, or drop it if the connection is gone (the peer closed it, or
        a failed write closed it: uvloop then refuses further writes). Never raises."""
        frames = self._frames(batch)
        if not frames:
            return
        try:
            if writer.transport.is_closing():
                raise ConnectionResetError("connection closed")
            writer.write(frames[0] if len(frames) == 1 else b"".join(frames))
        except (RuntimeError, OSError):
            link.broken = True
            link.wake.set()
            for msg in batch:
                self._drop(msg)

    async def _watch_eof(self, link: _Link, reader: asyncio.StreamReader) -> None:
        """The peer never writes after its handshake: any read result means the link is over."""
        with contextlib.suppress(OSError, ConnectionError):
            await reader.read(1)
        link.broken = True
        link.wake.set()

    def _frames(self, batch: list[Message]) -> list[bytes]:
        """Encode batch as few frames as fit max_frame_size (halving on TooLarge); a single
        message too large for one frame (a big snapshot) goes as a run of CHUNK frames."""
        limit = self._settings.max_frame_size
        try:
            return [encode_messages(batch, max_frame_size=limit)]
        except TooLarge:
            if len(batch) == 1:
                try:
                    return encode_chunked(batch, max_frame_size=limit)
                except TooLarge as e:
                    log.error("%s: dropping a %s: %s", self._id, type(batch[0]).__name__, e)
                    self._drop(batch[0])
                    return []
            half = len(batch) // 2
            return self._frames(batch[:half]) + self._frames(batch[half:])

    # --- inbound ----------------------------------------------------------------------

    def _accepted(self, conn: _Inbound) -> bool:
        """A new inbound connection: serve it, unless max_peer_connections are served."""
        limit = self._security.max_peer_connections
        if len(self._inbound) >= limit:
            self._log_rejection(
                logging.WARNING, conn.where, "refused connection", f"over {limit} peer connections"
            )
            return False
        self._inbound.add(conn)
        return True

    def _handshook(self, conn: _Inbound, frame: Handshake) -> str:
        """conn's first frame: the peer's id, once the handshake is valid (else PeerError)."""
        check_handshake(frame, self._settings.cluster_id)
        if frame.node_id not in self._links:
            raise ProtocolError(f"{frame.node_id!r} is not a peer of {self._id}")
        if self._server_ssl is not None:
            check_node_cert(conn.transport.get_extra_info("peercert"), frame.node_id)
        peer = frame.node_id
        self._supersede(peer, conn)
        conn.transport.write(encode_handshake(self._settings.cluster_id, self._id))
        log.debug("%s: accepted peer %s from %s", self._id, peer, conn.where)
        return peer

    def _refused(self, conn: _Inbound, error: BaseException) -> None:
        """conn broke the protocol (or never handshook): log why; the caller closes it."""
        match error:
            case WrongCluster():
                self._log_rejection(logging.ERROR, conn.where, "rejected connection", error)
            case TimeoutError():
                self._log_rejection(
                    logging.WARNING, conn.where, "dropped connection", "no handshake"
                )
            case _:
                self._log_rejection(logging.WARNING, conn.where, "dropped connection", error)

    def _gone(self, conn: _Inbound) -> None:
        self._inbound.discard(conn)
        for peer in [p for p, c in self._inbound_from.items() if c is conn]:
            del self._inbound_from[peer]

    def _supersede(self, peer: str, conn: _Inbound) -> None:
        """peer handshook on a new connection: close its older inbound one. A peer writes on
        one connection at a time, so the older one is abandoned; after a silent partition or
        a host crash it may be dead without our kernel knowing, and would stay open forever
        (taking a --max-peer-connections slot each time)."""
        older = self._inbound_from.get(peer)
        self._inbound_from[peer] = conn
        if older is not None and older is not conn:
            older.close()

    def _log_rejection(self, level: int, where: str, what: str, why: object) -> None:
        """Log a refused connection; the same refusal from the same host at most every
        REJECTION_LOG_INTERVAL_S (a misconfigured peer retries every few seconds)."""
        key = (where.rpartition(":")[0], str(why))
        now = asyncio.get_running_loop().time()
        last, suppressed = self._rejections.get(key, (-REJECTION_LOG_INTERVAL_S, 0))
        if now - last < REJECTION_LOG_INTERVAL_S:
            self._rejections[key] = (last, suppressed + 1)
            return
        again = f" (and {suppressed} more times)" if suppressed else ""
        log.log(level, "%s: %s from %s: %s%s", self._id, what, where, why, again)
        self._rejections[key] = (now, 0)

    def _receive(self, peer: str, msgs: Sequence[Message]) -> None:
        blocked = self._faults.blocks(peer)
        hub = self._hub
        accepted: list[Message] = []
        for msg in msgs:
            if msg.src != peer or msg.dst != self._id:
                log.warning(
                    "%s: dropped a message %s->%s from %s", self._id, msg.src, msg.dst, peer
                )
                continue
            if blocked:
                self._drop(msg)
                continue
            self._metrics.received[type(msg).__name__].inc()
            if hub.active:
                hub.publish("message", message_fields("recv", msg))
            accepted.append(msg)
        if accepted:
            self._deliver(accepted)


class _Inbound(asyncio.Protocol):
    """One inbound peer connection. Frames are decoded and delivered in data_received, as
    they arrive: no reader task between the socket and the node's inbox (a message reaches
    the node one turn of the loop sooner, and costs no task switch)."""

    def __init__(self, owner: PeerTransport) -> None:
        self._owner = owner
        self._decoder = FrameDecoder(owner._settings.max_frame_size)
        self._peer: str | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.where = "?"
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.where = _peername(transport)
        owner = self._owner
        if owner._closing or not owner._accepted(self):
            self.transport.close()
            return
        self._timer = asyncio.get_running_loop().call_later(
            owner._security.handshake_timeout_s, self._refuse, TimeoutError()
        )

    def data_received(self, data: bytes) -> None:
        owner = self._owner
        try:
            for frame in self._decoder.feed(data):
                if isinstance(frame, MessageBatch):
                    if self._peer is None:
                        raise ProtocolError("messages before the handshake")
                    owner._receive(self._peer, frame.messages)
                elif self._peer is not None:
                    raise ProtocolError(f"a second handshake from {self._peer}")
                else:
                    self._peer = owner._handshook(self, frame)
                    if self._timer is not None:
                        self._timer.cancel()
        except PeerError as e:
            self._refuse(e)

    def _refuse(self, error: BaseException) -> None:
        if not self.transport.is_closing():
            self._owner._refused(self, error)
            self.close()

    def close(self) -> None:
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._owner._gone(self)


def _peername(conn: asyncio.BaseTransport | asyncio.StreamWriter) -> str:
    name = conn.get_extra_info("peername")
    if isinstance(name, tuple) and len(name) >= 2:
        return f"{name[0]}:{name[1]}"
    return str(name)


def _why(e: BaseException) -> str:
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _abort_when_unacked(writer: asyncio.StreamWriter, seconds: float) -> None:
    """Ask the kernel to abort the connection once data written on it has gone
    unacknowledged for `seconds` (Linux TCP_USER_TIMEOUT; elsewhere nothing changes)."""
    sock = writer.get_extra_info("socket")
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if sock is not None and option is not None:
        sock.setsockopt(socket.IPPROTO_TCP, option, int(seconds * 1000))
