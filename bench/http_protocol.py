"""CPU per request of the HTTP protocol alone (runtime/http_server.HttpProtocol), in-process:
no sockets, no node. A GET answered at once and a PUT answered through a Pending that
resolves on the loop's next turn, fed to one connection whose transport only counts writes.

    .venv/bin/python bench/http_protocol.py [--requests 30000]

Prints the best of 5 batches (process CPU time per request). Compare two trees with
PYTHONPATH=OTHER/src. A benchmark of the parser, routing and answer path only: what a real
request also costs (syscalls, the event loop, the node) is in bench/compare.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import uvloop

from raftkv.runtime import http_server
from raftkv.runtime.admission import PeerPolicy
from raftkv.runtime.http_types import Pending, Request, Response, Router
from raftkv.security.config import SecurityConfig

HEAD = (
    b"Host: 127.0.0.1:8101\r\nUser-Agent: Python/3.11 aiohttp/3.14.5\r\nAccept: */*\r\n"
    b"Accept-Encoding: gzip, deflate\r\n"
)
GET = b"GET /v1/kv/key00042 HTTP/1.1\r\n" + HEAD + b"\r\n"
PUT = (
    b"PUT /v1/kv/key00042 HTTP/1.1\r\n"
    + HEAD
    + b"Content-Length: 256\r\nContent-Type: application/octet-stream\r\n\r\n"
    + b"v" * 256
)


class CountingTransport:
    def __init__(self) -> None:
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def get_protocol(self) -> None:
        return None

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


async def measure(requests: int) -> dict[str, float]:
    loop = asyncio.get_running_loop()

    def get(req: Request) -> Response:
        return Response(b"v" * 256, 200, "application/octet-stream", {"X-Raftkv-Revision": "42"})

    def put(req: Request) -> Pending:
        pending = Pending(
            lambda done: Response(b'{"revision":%d,"index":%d}' % done),
            timeout=5.0,
            on_timeout=lambda: TimeoutError("late"),
            otherwise=lambda e: None,
        )
        loop.call_soon(pending.set_result, (1, 2))  # as the driver resolves it, a turn later
        return pending

    router = Router(1 << 20)
    router.add("GET", "/v1/kv/{key:.+}", get)
    router.add("PUT", "/v1/kv/{key:.+}", put)
    app = http_server.HttpApp(router, SecurityConfig(), PeerPolicy(False, None, lambda p: False))
    conns: set[http_server.HttpProtocol] = set()
    out: dict[str, float] = {}
    for name, data in (("GET", GET), ("PUT", PUT)):
        proto = http_server.HttpProtocol(app, conns)
        transport = CountingTransport()
        proto.connection_made(transport)  # type: ignore[arg-type]
        best = float("inf")
        for batch in range(6):  # the first one warms up
            started = time.process_time()
            for _ in range(requests):
                proto.data_received(data)
                if name == "PUT":  # the Pending resolves, then its answer is written
                    await asyncio.sleep(0)
                    await asyncio.sleep(0)
            if batch:
                best = min(best, (time.process_time() - started) * 1e6 / requests)
        assert transport.writes == 6 * requests, (name, transport.writes)
        out[name] = best
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=30000, help="per batch (30000)")
    a = p.parse_args()
    result = uvloop.run(measure(a.requests))
    print(" ".join(f"{k} {v:.2f} us/request" for k, v in result.items()))


if __name__ == "__main__":
    main()
