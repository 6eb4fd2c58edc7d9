"""A live node for fuzzing: a SecureCluster run in a background event loop, reached with plain
blocking sockets from hypothesis examples (one node start for many examples)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .secure import SecureCluster, bearer

EXAMPLES = int(os.environ.get("RAFTKV_FUZZ_EXAMPLES", "40"))  # `make fuzz` raises it
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class RawAnswer:
    status: int | None  # None: the node closed the connection without an answer
    headers: dict[str, str]
    body: bytes
    head_only: bool = False  # the answer to a HEAD request (no body)

    def check_clear_error(self) -> None:
        """Every error answer is JSON {"error", "message"}, parser errors included."""
        if self.status is None or self.status < 400 or self.head_only:
            return
        assert self.headers.get("content-type", "").startswith("application/json"), self
        doc = json.loads(self.body)
        assert isinstance(doc.get("error"), str) and isinstance(doc.get("message"), str), doc


class LiveNode:
    def __init__(self, root: Path, **overrides: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.cluster = SecureCluster(root, 1, tls=False, **overrides)

    def _run(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        self._run(self.cluster.__aenter__())
        self._run(self.cluster.leader())

    def stop(self) -> None:
        try:
            self._run(self.cluster.__aexit__(None, None, None))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    @property
    def http_port(self) -> int:
        return self.cluster.port("n1")

    @property
    def raft_port(self) -> int:
        return self.cluster.raft_port("n1")

    def alive(self) -> bool:
        return self.cluster.running("n1")

    def state(self) -> tuple[int, int, int]:
        """(term, commit index, last index): any accepted command moves the last two."""
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}/v1/status", headers=bearer("read")
        )
        with _opener.open(req, timeout=5) as resp:
            doc = json.loads(resp.read())
        return int(doc["term"]), int(doc["commit_index"]), int(doc["last_index"])

    def send_http(self, data: bytes, timeout: float = 2.0) -> RawAnswer:
        """Send data and read one answer. The write side stays open (aiohttp drops a request
        whose client half-closed); an incomplete request is closed by the node's read timeout."""
        with socket.create_connection(("127.0.0.1", self.http_port), timeout=timeout) as s:
            with contextlib.suppress(OSError):
                s.sendall(data)
            return _read_raw(s, head_only=data.startswith(b"HEAD "))

    def send_raft(self, data: bytes, timeout: float = 1.0) -> bytes:
        """Send bytes to the raft port; whatever comes back before the node closes."""
        out = b""
        with socket.create_connection(("127.0.0.1", self.raft_port), timeout=timeout) as s:
            with contextlib.suppress(OSError):
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
            with contextlib.suppress(OSError):
                while chunk := s.recv(65536):
                    out += chunk
        return out


def _read_raw(s: socket.socket, *, head_only: bool = False) -> RawAnswer:
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                return RawAnswer(None, {}, data)
            data += chunk
    except (TimeoutError, OSError):
        return RawAnswer(None, {}, data)
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.decode("latin-1").strip().lower()] = value.decode("latin-1").strip()
    if head_only:  # the answer to HEAD has no body
        return RawAnswer(status, headers, b"", head_only=True)
    length = int(headers.get("content-length", "0") or 0)
    with contextlib.suppress(TimeoutError, OSError):
        while len(rest) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
    return RawAnswer(status, headers, rest[:length])


@contextlib.contextmanager
def live_node(root: Path, **overrides: Any) -> Iterator[LiveNode]:
    node = LiveNode(root, **overrides)
    node.start()
    try:
        yield node
    finally:
        node.stop()
