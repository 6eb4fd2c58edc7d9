"""Helpers for the embedding tests: free ports, peer maps, in-process clusters."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from raftkv.devcluster.ports import free_ports
from raftkv.embed import Node, NodeOptions
from raftkv.embed.machine import AnyMachine

T = TypeVar("T")
M = TypeVar("M", bound=AnyMachine)

FAST = NodeOptions(tick_ms=20, apply_timeout_s=10.0, attempt_timeout_s=2.0)


def run_async(main: Callable[[], Coroutine[Any, Any, T]], timeout: float = 30.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(main(), timeout)

    return asyncio.run(bounded())


def make_peers(ids: Sequence[str]) -> dict[str, str]:
    ports = free_ports(2 * len(ids))
    return {
        nid: f"127.0.0.1:{ports[2 * i]}@http://127.0.0.1:{ports[2 * i + 1]}"
        for i, nid in enumerate(ids)
    }


async def eventually(
    check: Callable[[], Awaitable[T | None]], timeout: float = 10.0, what: str = "condition"
) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await check()
        if result is not None and result is not False:
            return result
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.asynccontextmanager
async def cluster(
    root: Path,
    machines: Sequence[M],
    *,
    options: NodeOptions = FAST,
    cluster_id: str = "test",
    **kwargs: Any,
) -> AsyncIterator[list[Node[M]]]:
    """Start one Node per machine (ids n1..nN) in this event loop; stop them all at the end."""
    ids = [f"n{i + 1}" for i in range(len(machines))]
    peers = make_peers(ids)
    nodes = [
        Node(
            m,
            node_id=nid,
            peers=peers,
            data_dir=root / nid,
            cluster_id=cluster_id,
            options=options,
            **kwargs,
        )
        for nid, m in zip(ids, machines, strict=True)
    ]
    try:
        for node in nodes:
            await node.start()
        yield nodes
    finally:
        for node in nodes:
            await node.stop()


async def leader_of(nodes: Sequence[Node[M]], timeout: float = 10.0) -> Node[M]:
    """The node that is leader and has a leader everyone agrees on."""

    async def check() -> Node[M] | None:
        leaders = [n for n in nodes if n.running and n.is_leader]
        if len(leaders) == 1 and all(n.leader == leaders[0].id for n in nodes if n.running):
            return leaders[0]
        return None

    return await eventually(check, timeout, "a leader")
