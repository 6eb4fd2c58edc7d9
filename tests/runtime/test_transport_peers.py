"""The peer transport follows the address book: new peers, moved peers, forgotten peers, and a
message bigger than a frame (a snapshot) that crosses as chunks."""

from __future__ import annotations

import asyncio
from pathlib import Path

from raftkv.core.messages import Heartbeat, InstallSnapshot, Message
from raftkv.devcluster.ports import free_ports
from raftkv.runtime.events import EventHub
from raftkv.runtime.faults import NetFaults
from raftkv.runtime.metrics import NodeMetrics
from raftkv.runtime.settings import NodeSettings, PeerAddress
from raftkv.runtime.transport import PeerTransport

from .cluster import eventually, run_async


def _transport(
    tmp: Path, nid: str, port: int, peers: dict[str, PeerAddress], got: list[Message]
) -> PeerTransport:
    settings = NodeSettings(
        node_id=nid,
        data_dir=tmp / nid,
        listen=("127.0.0.1", port),
        http=("127.0.0.1", 0),
        peers=peers,
        max_frame_size=1024,
    )
    return PeerTransport(settings, got.extend, NetFaults(), EventHub(nid), NodeMetrics())


def test_links_follow_the_book_and_big_messages_cross_in_chunks(tmp_path: Path) -> None:
    async def main() -> None:
        pa, pb, wrong = free_ports(3)
        a_addr = PeerAddress("127.0.0.1", pa, "http://127.0.0.1:1")
        b_addr = PeerAddress("127.0.0.1", pb, "http://127.0.0.1:2")
        got_a: list[Message] = []
        got_b: list[Message] = []
        # a knows b at a wrong port; b does not know a yet (it refuses a's connection).
        a = _transport(
            tmp_path,
            "a",
            pa,
            {"a": a_addr, "b": PeerAddress("127.0.0.1", wrong, "http://127.0.0.1:2")},
            got_a,
        )
        b = _transport(tmp_path, "b", pb, {"b": b_addr}, got_b)
        await a.start()
        await b.start()
        try:
            b.set_peers({"a": a_addr, "b": b_addr})
            a.set_peers({"a": a_addr, "b": b_addr})  # b moved: a re-dials it

            async def delivered() -> bool:
                a.send([Heartbeat(1, "a", "b", 0)])
                await asyncio.sleep(0.05)
                return bool(got_b)

            await eventually(delivered, what="a's heartbeat to reach b")
            big = InstallSnapshot(1, "b", "a", 10, 1, ("a", "b"), bytes(range(256)) * 40)
            b.send([big])  # 10 KiB through 1 KiB frames
            await eventually(lambda: _has(got_a, big), what="the snapshot to cross")
            a.set_peers({"a": a_addr})  # b is forgotten: nothing goes to it any more
            assert not a.connected("b")
            before = len(got_b)
            a.send([Heartbeat(1, "a", "b", 0)])
            await asyncio.sleep(0.2)
            assert len(got_b) == before
        finally:
            await a.close()
            await b.close()

    run_async(main)


async def _has(got: list[Message], msg: Message) -> bool:
    return msg in got
