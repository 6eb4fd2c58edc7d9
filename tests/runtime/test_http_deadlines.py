"""runtime/http_server.Deadlines: a Pending answer that does not resolve in time gets its
timeout answer (within one DEADLINE_TICK_S), one that resolves does not, and the sweep's timer
stops once nothing waits. Real TCP to an HttpProtocol serving a small router."""

from __future__ import annotations

import asyncio
import time

from raftkv.errors import Timeout
from raftkv.runtime import http_server
from raftkv.runtime.admission import PeerPolicy
from raftkv.runtime.http_types import Pending, Request, Response, Router
from raftkv.security.config import SecurityConfig

from .cluster import run_async
from .test_http_server import read_answer

TIMEOUT = 0.3


async def serve(
    router: Router,
) -> tuple[asyncio.Server, int, http_server.Deadlines, set[http_server.HttpProtocol]]:
    app = http_server.HttpApp(router, SecurityConfig(), PeerPolicy(False, None, lambda p: False))
    conns: set[http_server.HttpProtocol] = set()
    deadlines = http_server.Deadlines(conns)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: http_server.HttpProtocol(app, conns, deadlines), "127.0.0.1", 0
    )
    return server, int(server.sockets[0].getsockname()[1]), deadlines, conns


def test_a_pending_answer_times_out_within_a_tick_and_a_resolved_one_does_not() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        never: asyncio.Future[int] = loop.create_future()

        def stuck(req: Request) -> Pending:
            return Pending(
                never,
                lambda v: Response(b"late"),
                timeout=TIMEOUT,
                on_timeout=lambda: Timeout("not within the time"),
                otherwise=lambda e: None,
            )

        def quick(req: Request) -> Pending:
            fut: asyncio.Future[int] = loop.create_future()
            loop.call_later(0.05, fut.set_result, 7)
            return Pending(
                fut,
                lambda v: Response(b"%d" % v),
                timeout=TIMEOUT,
                on_timeout=lambda: Timeout("not within the time"),
                otherwise=lambda e: None,
            )

        router = Router(1024)
        router.add("GET", "/stuck", stuck)
        router.add("GET", "/quick", quick)
        server, port, deadlines, conns = await serve(router)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            started = time.monotonic()
            writer.write(
                b"GET /stuck HTTP/1.1\r\nHost: x\r\n\r\nGET /quick HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            first = await asyncio.wait_for(read_answer(reader), 5)
            waited = time.monotonic() - started
            assert first.status == 504 and first.error() == "timeout", first
            assert TIMEOUT <= waited < TIMEOUT + http_server.DEADLINE_TICK_S + 0.25, waited
            assert never.cancelled()  # the wait ended (a write may still commit)
            second = await asyncio.wait_for(read_answer(reader), 5)
            assert (second.status, second.body) == (200, b"7")  # answered, not timed out
            await asyncio.sleep(TIMEOUT + 2 * http_server.DEADLINE_TICK_S)
            assert all(c.deadline is None for c in conns)
            assert deadlines._timer is None  # nothing waits: the sweep stopped
            writer.close()
        finally:
            deadlines.close()
            server.close()
            await server.wait_closed()

    run_async(main)
