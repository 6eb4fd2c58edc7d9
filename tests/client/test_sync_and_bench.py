"""The blocking client (same behaviour as the async one) and the load generator."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from raftkv.client import Client, RetryPolicy
from raftkv.client.bench import BenchConfig, run_bench
from raftkv.errors import Timeout

from .fake_server import FakeNode, fake_cluster, fake_cluster_in_thread

FAST = RetryPolicy(timeout=5.0, attempt_timeout=1.0, backoff_base=0.01, backoff_max=0.05)


@pytest.fixture
def nodes() -> Iterator[list[FakeNode]]:
    with fake_cluster_in_thread(2) as started:
        yield started


def test_sync_client_behaves_like_the_async_one(nodes: list[FakeNode]) -> None:
    nodes[0].faults = ["drop"]
    with Client([n.url for n in nodes], policy=FAST) as kv:
        assert kv.put("x", "1").revision == 1  # retried after the drop, applied once
        got = kv.get("x")
        assert got is not None and got.text == "1"
        assert kv.cas("x", "1", "2").succeeded
        assert kv.status().role == "leader"
        assert nodes[0].store.applied == 2
    kv.close()  # closing twice is fine


def test_sync_client_timeout(nodes: list[FakeNode]) -> None:
    for n in nodes:
        n.faults = ["hang"] * 10
    policy = RetryPolicy(timeout=0.5, attempt_timeout=0.2, backoff_base=0.01)
    with (
        Client([n.url for n in nodes], policy=policy) as kv,
        pytest.raises(Timeout, match="may have committed"),
    ):
        kv.put("x", "1")


def test_sync_watch(nodes: list[FakeNode]) -> None:
    nodes[0].store.events = [
        {"type": "put", "key": "a", "value": "1"},
        {"type": "put", "key": "b", "value": "2"},
    ]
    with Client(nodes[0].url, policy=FAST) as kv:
        it = kv.watch("", from_revision=1)
        got = [next(it).key, next(it).key]
        it.close()
    assert got == ["a", "b"]


def test_bench_against_fake_nodes() -> None:
    async def body() -> None:
        async with fake_cluster(1) as nodes:
            ticks: list[int] = []
            config = BenchConfig([nodes[0].url], op="put", clients=4, duration=1.2, value_size=8)
            result = await run_bench(config, lambda _t, ops, _r, _e: ticks.append(ops))
            doc = result.to_json()
            assert doc["ops"] == result.ops > 0 and doc["errors"] == 0
            assert ticks and ticks[0] > 0
            assert set(doc["latency_ms"]) == {"p50", "p90", "p99", "p99.9", "max"}
            assert doc["latency_ms"]["p50"] <= doc["latency_ms"]["max"]
            assert doc["cpu_s"] > 0
            get = await run_bench(BenchConfig([nodes[0].url], op="get", clients=2, duration=0.3))
            assert get.ops > 0 and get.errors == 0

    asyncio.run(asyncio.wait_for(body(), 30))
