"""One-way partitions: every Raft connection goes through a relay the harness can cut.

The runtime's fault hook drops a blocked peer's traffic in both directions, so it cannot cut
just one direction. But a node only ever writes on its own outbound connection to a peer
(the peer answers the handshake and never writes again), so Raft traffic from i to j flows
on i's connection to j alone. Node i is told (in its --peers) that j listens on a relay port
R(i, j); the relay forwards to j's real port. Cutting (i, j) closes that relay's connections
and refuses new ones: i can no longer send to j, while j still reaches i through R(j, i).

Invariant: while (i, j) is cut, no byte from i reaches j; after heal(), i's reconnect (its
transport retries with a backoff of at most 2 s) succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Iterable

HOST = "127.0.0.1"
CHUNK = 256 * 1024


class LinkProxy:
    def __init__(self, targets: dict[str, int]) -> None:
        """targets: node id -> the port its Raft transport really listens on."""
        self._targets = targets
        self._servers: dict[tuple[str, str], asyncio.Server] = {}
        self._ports: dict[tuple[str, str], int] = {}
        self._conns: dict[tuple[str, str], set[asyncio.StreamWriter]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.cut_links: set[tuple[str, str]] = set()

    async def start(self) -> None:
        for src in self._targets:
            for dst in self._targets:
                if src == dst:
                    continue
                pair = (src, dst)
                server = await asyncio.start_server(functools.partial(self._accept, pair), HOST, 0)
                self._servers[pair] = server
                self._ports[pair] = server.sockets[0].getsockname()[1]
                self._conns[pair] = set()

    def port(self, src: str, dst: str) -> int:
        """The port src must dial to reach dst."""
        return self._ports[(src, dst)]

    def cut(self, pairs: Iterable[tuple[str, str]]) -> None:
        """From now on src cannot send to dst, for every (src, dst) given."""
        for pair in pairs:
            self.cut_links.add(pair)
            for writer in self._conns[pair]:
                writer.close()

    def heal(self) -> None:
        self.cut_links.clear()

    async def close(self) -> None:
        for server in self._servers.values():
            server.close()
        for conns in self._conns.values():
            for writer in conns:
                writer.close()
        if self._tasks:  # they end once their sockets are closed
            _, late = await asyncio.wait(list(self._tasks), timeout=2.0)
            for task in late:
                task.cancel()

    async def _accept(
        self, pair: tuple[str, str], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if pair in self.cut_links:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(HOST, self._targets[pair[1]]), 2.0
            )
        except (OSError, TimeoutError):
            writer.close()  # the target is down: the dialer sees a failed handshake, retries
            return
        conns = self._conns[pair]
        conns.update((writer, up_writer))
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        finally:
            self._tasks.discard(task)
            conns.discard(writer)
            conns.discard(up_writer)
            writer.close()
            up_writer.close()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF or an error on either side; then close the other side too."""
    with contextlib.suppress(OSError, ConnectionError, asyncio.IncompleteReadError):
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    writer.close()
