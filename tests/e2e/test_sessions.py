"""Exactly-once across session eviction (issue #15, item 1), on real processes with fsync.

Client a writes once; then more clients than a node keeps sessions for (10,000) write once
each, so a's session is evicted; the retry of a's seq 1 must be refused (410
session_expired), never applied a second time. Before sessions were opened through the log,
an unknown session counted as new and the retry was applied again (first revision 1, the
retry revision 10052).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from raftkv.client import AsyncClient, RetryPolicy

from .harness import running_cluster

pytestmark = pytest.mark.timeout(300)

OTHERS = 10_050  # more clients than the 10,000 sessions a node remembers
POOL = 32  # clients writing at once
POLICY = RetryPolicy(timeout=30.0)


async def _others_write_once(http: aiohttp.ClientSession, endpoint: str) -> None:
    """OTHERS distinct clients (each a new AsyncClient, its own session) write once each."""
    todo = iter(range(OTHERS))

    async def worker() -> None:
        for i in todo:
            async with AsyncClient([endpoint], http_session=http, policy=POLICY) as c:
                await c.put(f"other/{i}", "x")

    await asyncio.gather(*(worker() for _ in range(POOL)))


async def _scenario(endpoint: str) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        a = AsyncClient([endpoint], http_session=http, policy=POLICY)
        first = await a.put("k", "from a")
        a_id = a.client_id
        assert a_id is not None
        await _others_write_once(http, endpoint)

        retry = {"X-Raftkv-Client": a_id, "X-Raftkv-Seq": "1", "X-Raftkv-Ack": "0"}
        async with http.put(f"{endpoint}/v1/kv/k", data=b"from a", headers=retry) as r:
            status, body = r.status, await r.json()
        assert (status, body.get("error")) == (410, "session_expired"), (
            f"the retry of a's seq 1 (first applied at revision {first.revision}) "
            f"answered {status} {body}"
        )
        got = await a.get("k")
        assert got is not None and got.revision == first.revision  # not applied again

        # a's client learns its session is gone on its next write: it opens a new one and
        # the write (which certainly never reached the log before) applies once.
        again = await a.put("k", "a again")
        assert a.client_id != a_id and not again.duplicate
        assert again.revision > first.revision
        await a.close()


def test_a_retry_after_its_session_was_evicted_is_refused_not_applied(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as cluster:
        asyncio.run(_scenario(cluster.url(cluster.leader())))
