"""SyncNode: an embedded Node for applications without asyncio.

The node runs in its own event loop on a background thread; every method blocks the calling
thread until the node answers. Event listeners run on the node's thread.

    with SyncNode(counter, node_id="n1", peers=PEERS, data_dir="data/n1") as node:
        node.call(counter.add, 5)            # a @replicated method, called synchronously
        node.apply(command)                  # a plain StateMachine's command
        node.read(lambda m: m.value)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, ParamSpec, TypeVar

from raftkv.embed.events import Listener
from raftkv.embed.machine import AnyMachine
from raftkv.embed.node import Consistency, Node, NodeStatus
from raftkv.embed.options import NodeOptions
from raftkv.errors import CallerError
from raftkv.runtime.settings import PeerAddress

M = TypeVar("M", bound=AnyMachine)
T = TypeVar("T")
P = ParamSpec("P")

START_TIMEOUT_S = 60.0


class SyncNode(Generic[M]):
    def __init__(
        self,
        machine: M,
        *,
        node_id: str,
        peers: Mapping[str, str | PeerAddress],
        data_dir: str | Path,
        cluster_id: str = "raftkv",
        command_type: Any = Any,
        result_type: Any = Any,
        options: NodeOptions | None = None,
    ) -> None:
        self.node: Node[M] = Node(
            machine,
            node_id=node_id,
            peers=peers,
            data_dir=data_dir,
            cluster_id=cluster_id,
            command_type=command_type,
            result_type=result_type,
            options=options,
        )
        self.machine = machine
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise CallerError(f"node {self.node.id} was started before")
        ready = threading.Event()
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name=f"raftkv-{self.node.id}", daemon=True)
        self._thread.start()
        ready.wait()
        self._loop = loop
        try:
            self._run(self.node.start(), START_TIMEOUT_S)
        except BaseException:
            self._shutdown_loop()
            raise

    def stop(self) -> None:
        if self._loop is None:
            return
        try:
            self._run(self.node.stop(), START_TIMEOUT_S)
        finally:
            self._shutdown_loop()

    def __enter__(self) -> SyncNode[M]:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _shutdown_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join()

    # --- requests -------------------------------------------------------------------------

    def apply(self, command: object, *, timeout: float | None = None) -> Any:
        return self._run(self.node.apply(command, timeout=timeout))

    def read(
        self,
        fn: Callable[[M], T],
        *,
        consistency: Consistency = "linearizable",
        timeout: float | None = None,
    ) -> T:
        return self._run(self.node.read(fn, consistency=consistency, timeout=timeout))

    def call(self, method: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call an async method (a @replicated or @query method, node.transfer_leadership,
        ...) on the node's loop and wait for its result."""

        async def invoke() -> T:
            return await method(*args, **kwargs)

        return self._run(invoke())

    def status(self) -> NodeStatus:
        async def status() -> NodeStatus:
            return self.node.status()

        return self._run(status())

    @property
    def is_leader(self) -> bool:
        return self.node.is_leader

    @property
    def leader(self) -> str | None:
        return self.node.leader

    def wait_for_leader(self, timeout: float | None = None) -> str:
        return self._run(self.node.wait_for_leader(timeout))

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """listener(event) runs on the node's thread, for every leadership event."""
        return self.node.add_listener(listener)

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        loop = self._loop
        if loop is None:
            coro.close()
            raise CallerError(f"node {self.node.id} is not running (start it first)")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, loop)
        return future.result(timeout)
