"""The blocking client: the async client run on a private event loop in a daemon thread.

One behaviour for both clients: every call here is the same coroutine of AsyncClient, so
retries, sessions, timeouts and errors are identical.

    with Client("http://127.0.0.1:8001") as kv:
        kv.put("x", "99")
        assert kv.get("x").text == "99"
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Coroutine, Generator, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from raftkv.client.aio import AsyncClient, CasResult, Consistency, Member, Value
from raftkv.client.credentials import Credentials
from raftkv.client.router import RetryPolicy
from raftkv.client.types import GetResult, ServerStatus, TxnResult, WatchEvent, WriteResult
from raftkv.errors import RaftkvError

_T = TypeVar("_T")


class Client:
    def __init__(
        self,
        endpoints: str | Iterable[str] | None = None,
        *,
        timeout: float = 10.0,
        policy: RetryPolicy | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="raftkv-client", daemon=True
        )
        self._thread.start()
        self._closed = False
        try:
            self._aio = self._run(_make(endpoints, timeout, policy, credentials))
        except BaseException:
            self._stop_loop()
            raise

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._run(self._aio.close())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if not self._thread.is_alive():
            coro.close()
            raise RaftkvError("the client is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    # --- the API: the same as AsyncClient's ---------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        return self._aio.endpoints

    @property
    def client_id(self) -> str | None:
        return self._aio.client_id

    def put(
        self,
        key: str,
        value: Value,
        *,
        prev_revision: int | None = None,
        timeout: float | None = None,
    ) -> WriteResult:
        return self._run(self._aio.put(key, value, prev_revision=prev_revision, timeout=timeout))

    def get(
        self, key: str, *, consistency: Consistency = "linearizable", timeout: float | None = None
    ) -> GetResult | None:
        return self._run(self._aio.get(key, consistency=consistency, timeout=timeout))

    def delete(
        self, key: str, *, prev_revision: int | None = None, timeout: float | None = None
    ) -> WriteResult:
        return self._run(self._aio.delete(key, prev_revision=prev_revision, timeout=timeout))

    def cas(
        self, key: str, expected: Value | None, new: Value, *, timeout: float | None = None
    ) -> CasResult:
        return self._run(self._aio.cas(key, expected, new, timeout=timeout))

    def txn(
        self,
        compare: Sequence[Mapping[str, Any]] = (),
        success: Sequence[Mapping[str, Any]] = (),
        failure: Sequence[Mapping[str, Any]] = (),
        *,
        timeout: float | None = None,
    ) -> TxnResult:
        return self._run(self._aio.txn(compare, success, failure, timeout=timeout))

    def watch(
        self, prefix: str | Sequence[str] = "", *, from_revision: int | None = None
    ) -> Generator[WatchEvent, None, None]:
        """A blocking iterator over watch events (several prefixes: several watches on one
        stream, see AsyncClient.watch); close() it (or break) to stop watching."""
        agen = self._aio.watch(prefix, from_revision=from_revision)
        try:
            while True:
                try:
                    yield self._run(_anext(agen))
                except StopAsyncIteration:
                    return
        finally:
            if not self._closed:
                self._run(agen.aclose())

    def status(self, endpoint: str | None = None) -> ServerStatus:
        return self._run(self._aio.status(endpoint))

    def cluster_status(self) -> dict[str, ServerStatus | RaftkvError]:
        return self._run(self._aio.cluster_status())

    def members(self) -> list[Member]:
        return self._run(self._aio.members())

    def add_member(self, node_id: str, raft_address: str, http_url: str) -> Any:
        return self._run(self._aio.add_member(node_id, raft_address, http_url))

    def remove_member(self, node_id: str) -> Any:
        return self._run(self._aio.remove_member(node_id))

    def promote_member(self, node_id: str) -> Any:
        return self._run(self._aio.promote_member(node_id))

    def transfer_leader(self, to: str | None = None, *, timeout: float | None = None) -> str:
        return self._run(self._aio.transfer_leader(to, timeout=timeout))

    def set_faults(self, endpoint: str, faults: Mapping[str, Any]) -> Any:
        return self._run(self._aio.set_faults(endpoint, faults))


async def _make(
    endpoints: str | Iterable[str] | None,
    timeout: float,
    policy: RetryPolicy | None,
    credentials: Credentials | None,
) -> AsyncClient:
    return AsyncClient(endpoints, timeout=timeout, policy=policy, credentials=credentials)


async def _anext(it: AsyncGenerator[WatchEvent, None]) -> WatchEvent:
    return await it.__anext__()
