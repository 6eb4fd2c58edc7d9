"""GET /v1/snapshot: a point-in-time backup of the whole store, as a snapshot file.

The answer is linearizable (the leader confirms its leadership with a quorum first; a follower
first applies the leader's read index), so it holds every write acknowledged before the
request. The body is in
the storage's snapshot file format (magic, checksummed record: index, term, configuration, the
store and the address book); `raftkv snapshot save FILE` writes it, `raftkv snapshot restore`
seeds a new node's data directory from it. Headers: X-Raftkv-Snapshot-Index, -Term.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from raftkv.runtime.addresses import AddressBook
from raftkv.runtime.http_types import Request, Response, Router
from raftkv.runtime.node import RaftRuntime
from raftkv.storage.snapshot import encode_snapshot

Barrier = Callable[[Request], Awaitable[None]]  # returns once a read here is linearizable


class SnapshotApi:
    def __init__(self, node: RaftRuntime, book: AddressBook, barrier: Barrier) -> None:
        self._node = node
        self._book = book
        self._barrier = barrier

    def add_routes(self, router: Router) -> None:
        router.add("GET", "/v1/snapshot", self.get)

    async def get(self, request: Request) -> Response:
        await self._barrier(request)
        snap = await self._node.snapshot()
        return Response(
            encode_snapshot(snap),
            200,
            "application/octet-stream",
            {
                "X-Raftkv-Snapshot-Index": str(snap.index),
                "X-Raftkv-Snapshot-Term": str(snap.term),
            },
        )
