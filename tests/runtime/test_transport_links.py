"""Peer links never die: a port that accepts and resets, and a link task that ends, are
survived; the link's state is reported (issue #15, item 3). Under uvloop, as `raftkv serve`
runs: uvloop raises RuntimeError from the handshake write on a connection already reset."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvloop

from raftkv.core.messages import Heartbeat, Message
from raftkv.devcluster.ports import free_ports
from raftkv.runtime.events import EventHub
from raftkv.runtime.faults import NetFaults
from raftkv.runtime.metrics import NodeMetrics
from raftkv.runtime.settings import NodeSettings, PeerAddress
from raftkv.runtime.transport import PeerTransport
from raftkv.wire import Frame, FrameDecoder, Handshake, encode_handshake, encode_messages

from .cluster import eventually
from .resetting import ResettingListener

T = TypeVar("T")


def run_uvloop(main: Callable[[], Coroutine[Any, Any, T]], timeout: float = 30.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(main(), timeout)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(bounded())


def _pair(tmp: Path) -> tuple[PeerTransport, PeerTransport, NodeMetrics, int, list[Message]]:
    """Transports a and b knowing each other (not started); a's metrics; b's port; what b got."""
    pa, pb = free_ports(2)
    peers = {
        "a": PeerAddress("127.0.0.1", pa, "http://127.0.0.1:1"),
        "b": PeerAddress("127.0.0.1", pb, "http://127.0.0.1:2"),
    }
    got_b: list[Message] = []
    metrics = NodeMetrics()
    made = []
    for nid, port, deliver, m in (
        ("a", pa, lambda msgs: None, metrics),
        ("b", pb, got_b.extend, NodeMetrics()),
    ):
        settings = NodeSettings(
            node_id=nid,
            data_dir=tmp / nid,
            listen=("127.0.0.1", port),
            http=("127.0.0.1", 0),
            peers=peers,
        )
        made.append(PeerTransport(settings, deliver, NetFaults(), EventHub(nid), m))
    return made[0], made[1], metrics, pb, got_b


def _sample(metrics: NodeMetrics, name: str, peer: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"peer": peer})


async def _busy_loop() -> None:
    """Keep the event loop busy, as a node under write load is: each turn blocks it 5 ms
    (releasing the GIL, so the listener thread resets connections meanwhile)."""
    while True:
        time.sleep(0.005)
        await asyncio.sleep(0)


async def _reaches(a: PeerTransport, got: list[Message]) -> bool:
    before = len(got)
    a.send([Heartbeat(1, "a", "b", 0)])
    await asyncio.sleep(0.05)
    return len(got) > before


def test_a_link_redials_a_port_that_accepts_and_resets(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a, b, metrics, port_b, got_b = _pair(tmp_path)

    async def main() -> None:
        listener = ResettingListener("127.0.0.1", port_b)
        listener.start()
        busy = asyncio.create_task(_busy_loop())
        await a.start()
        try:
            await eventually(
                lambda: _true(listener.resets >= 4), what="a to keep redialing the resetting port"
            )
            busy.cancel()
            await asyncio.to_thread(listener.stop)
            await b.start()  # the peer is back on the same port
            await eventually(lambda: _reaches(a, got_b), what="a's heartbeat to reach b")
            state = a.link_state("b")
            assert state is not None and state.connected and state.down_since is None
            assert state.failures >= 4 and state.last_error is not None
            assert _sample(metrics, "raftkv_peer_link_up", "b") == 1.0
            assert (_sample(metrics, "raftkv_peer_link_failures_total", "b") or 0) >= 4
            await b.close()  # down again: said so, with why
            await eventually(lambda: _true(not a.connected("b")), what="a to see b gone")
            state = a.link_state("b")
            assert state is not None and not state.connected and state.down_since is not None
            assert _sample(metrics, "raftkv_peer_link_up", "b") == 0.0
        finally:
            busy.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await busy
            listener.halt.set()
            link = a._links["b"]
            await a.close()
            await b.close()
        # A task ended by close() is not restarted.
        assert link.task is not None and link.task.done() and link.restart is None

    with caplog.at_level(logging.INFO, logger="raftkv.transport"):
        run_uvloop(main)
    down = [r for r in caplog.records if "no link to peer b" in r.getMessage()]
    up = [r for r in caplog.records if "link to peer b is up" in r.getMessage()]
    assert len(down) == 2 and len(up) == 1, down  # once per streak, not per attempt


def test_a_link_task_that_ends_is_restarted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a, b, metrics, _, got_b = _pair(tmp_path)

    async def main() -> None:
        await b.start()
        await a.start()
        try:
            await eventually(lambda: _reaches(a, got_b), what="a's heartbeat to reach b")
            task = a._links["b"].task
            assert task is not None
            task.cancel()  # the link task ends (not by close): the supervisor restarts it
            await eventually(lambda: _true(a._links["b"].task is not task), what="a restart")
            state = a.link_state("b")
            assert state is not None and state.last_error == "link task ended: cancelled"
            await eventually(lambda: _reaches(a, got_b), what="the restarted link to deliver")
            # A forgotten peer's task is ended on purpose: not restarted, its series dropped.
            link = a._links["b"]
            a.set_peers({"a": a._settings.peers["a"]})
            await asyncio.sleep(0.3)
            assert link.task is not None and link.task.done() and link.restart is None
            assert a.link_state("b") is None
            assert _sample(metrics, "raftkv_peer_link_up", "b") is None
        finally:
            await a.close()
            await b.close()

    with caplog.at_level(logging.INFO, logger="raftkv.transport"):
        run_uvloop(main)
    ended = [r for r in caplog.records if "link task to peer b ended" in r.getMessage()]
    assert len(ended) == 1


def test_a_peers_new_connection_closes_its_older_one(tmp_path: Path) -> None:
    """A peer writes on one connection at a time, so when it handshakes on a new one its older
    one is abandoned: closed, not kept. After a silent partition or a host crash that older
    connection may be dead without this host's kernel knowing; kept, each one would hold a
    --max-peer-connections slot forever (one more per partition, found in tests/e2e/
    test_hosts.py)."""
    _, b, _, port_b, got_b = _pair(tmp_path)

    async def main() -> None:
        await b.start()
        writers: list[asyncio.StreamWriter] = []
        try:
            old_reader, old_writer = await _handshake_as("a", port_b)
            writers.append(old_writer)
            _, new_writer = await _handshake_as("a", port_b)
            writers.append(new_writer)
            assert await asyncio.wait_for(old_reader.read(), 2.0) == b"", "older one closed"
            new_writer.write(encode_messages([Heartbeat(1, "a", "b", 0)]))
            await eventually(lambda: _true(len(got_b) == 1), what="b to take the new one's")
            assert len(b._inbound) == 1
        finally:
            for writer in writers:
                writer.close()
            await b.close()

    run_uvloop(main)


async def _handshake_as(
    node_id: str, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw peer connection to port, handshaken as node_id (cluster "raftkv")."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(encode_handshake("raftkv", node_id))
    decoder = FrameDecoder()
    frames: list[Frame] = []
    while not frames:
        data = await asyncio.wait_for(reader.read(4096), 5.0)
        assert data, "the peer closed the connection during the handshake"
        frames = decoder.feed(data)
    assert isinstance(frames[0], Handshake)
    return reader, writer


async def _true(value: bool) -> bool:
    return value


def test_inbound_frames_are_taken_as_they_arrive_and_a_broken_protocol_closes_the_connection(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The inbound side decodes in data_received: a handshake and messages written together
    are all taken; messages before a handshake, or a second handshake, close that connection
    (logged) and nothing of it is delivered; the transport serves on."""
    _, b, _, port_b, got_b = _pair(tmp_path)
    hello = encode_handshake("raftkv", "a")
    beat = encode_messages([Heartbeat(1, "a", "b", 0)])

    async def closed(payload: bytes) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_b)
        writer.write(payload)
        try:
            while await asyncio.wait_for(reader.read(4096), 5.0):
                pass  # b's handshake, if it answered one
        finally:
            writer.close()

    async def main() -> None:
        await b.start()
        try:
            with caplog.at_level(logging.WARNING, logger="raftkv.transport"):
                await closed(beat)
                await closed(hello + hello + beat)
            assert got_b == [], "nothing from a connection that broke the protocol"
            reasons = " ".join(r.getMessage() for r in caplog.records)
            assert "messages before the handshake" in reasons, reasons
            assert "a second handshake from a" in reasons, reasons
            _, writer = await asyncio.open_connection("127.0.0.1", port_b)
            writer.write(hello + beat + beat)  # one write: every frame in it is taken
            await eventually(lambda: _true(len(got_b) == 2), what="b to take both heartbeats")
            assert len(b._inbound) == 1
            writer.close()
            await eventually(lambda: _true(not b._inbound), what="b to forget the connection")
        finally:
            await b.close()

    run_uvloop(main)
