"""A closed-loop load generator on the async client (`raftkv bench`).

C clients each keep exactly one request in flight for the whole duration; every latency is
recorded, and percentiles are computed from all samples (exact, so finer than an HDR
histogram's buckets). ProgressBar draws the live progress line, report() the summary.
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

import aiohttp

from raftkv.client.aio import AsyncClient, Consistency
from raftkv.client.credentials import Credentials
from raftkv.client.http import client_session
from raftkv.errors import RaftkvError

Op = Literal["put", "get"]
KEYS_PER_CLIENT = 100  # puts cycle through these, so the store stays small
GET_KEYS = 1000  # keys written before a get run, read at random
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


@dataclass(frozen=True, slots=True)
class BenchConfig:
    endpoints: Sequence[str]
    op: Op = "put"
    clients: int = 16
    duration: float = 10.0
    value_size: int = 256
    consistency: Consistency = "linearizable"
    timeout: float = 10.0
    credentials: Credentials | None = None  # unset fields come from the environment


@dataclass(slots=True)
class BenchResult:
    config: BenchConfig
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, successful ops only
    errors: int = 0
    first_error: str = ""
    cpu_seconds: float = 0.0  # CPU time of this process (the load generator) during the run

    @property
    def ops(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        return self.ops / self.elapsed if self.elapsed > 0 else 0.0

    def percentiles_ms(self) -> dict[str, float]:
        ordered = sorted(self.latencies)
        out = {f"p{q:g}": percentile(ordered, q) * 1000.0 for q in PERCENTILES}
        out["max"] = (ordered[-1] if ordered else 0.0) * 1000.0
        return out

    def to_json(self) -> dict[str, Any]:
        c = self.config
        return {
            "op": c.op,
            "clients": c.clients,
            "duration_s": round(self.elapsed, 3),
            "value_size": c.value_size,
            "consistency": c.consistency if c.op == "get" else None,
            "ops": self.ops,
            "errors": self.errors,
            "first_error": self.first_error or None,
            "throughput": round(self.throughput, 1),
            "latency_ms": {k: round(v, 3) for k, v in self.percentiles_ms().items()},
            "cpu_s": round(self.cpu_seconds, 3),
            "cpu_percent": round(100.0 * self.cpu_seconds / self.elapsed, 1)
            if self.elapsed
            else 0.0,
            "endpoints": list(c.endpoints),
        }


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0 when empty)."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(round(q * len(ordered) / 100.0, 9)))  # round: 99.9% of 1000 is 999
    return ordered[min(rank, len(ordered)) - 1]


# (elapsed s, ops, ops/s last second, errors)
ProgressCallback = Callable[[float, int, float, int], None]


class ProgressBar:
    """A ProgressCallback: one bar redrawn in place on a terminal, a line per call elsewhere.

    [##########..........]  5.0/10s   31,540 ops   6,310 ops/s   0 errors
    """

    def __init__(self, duration: float, stream: TextIO | None = None, width: int = 24) -> None:
        self._duration = duration
        self._stream = stream if stream is not None else sys.stderr
        self._width = width
        self._tty = self._stream.isatty()
        self._drawn = False

    def __call__(self, elapsed: float, ops: int, rate: float, errors: int) -> None:
        done = min(1.0, elapsed / self._duration) if self._duration > 0 else 1.0
        filled = round(done * self._width)
        bar = "#" * filled + "." * (self._width - filled)
        text = (
            f"[{bar}] {elapsed:5.1f}/{self._duration:g}s  {ops:10,d} ops  "
            f"{rate:9,.0f} ops/s  {errors:,d} errors"
        )
        if self._tty:
            self._stream.write("\r" + text)
            self._drawn = True
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def close(self) -> None:
        """End the bar's line (call once the run is over)."""
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = False


def report(result: BenchResult) -> str:
    """The human summary: throughput, then latency percentiles as a table."""
    doc = result.to_json()
    lat = result.latencies
    mean = sum(lat) / len(lat) * 1000.0 if lat else 0.0
    low = min(lat) * 1000.0 if lat else 0.0
    lines = [
        f"ops          {doc['ops']:,} in {doc['duration_s']:.2f}s, {doc['errors']} errors",
        f"throughput   {doc['throughput']:,.0f} ops/s",
        f"client cpu   {doc['cpu_s']:.2f}s ({doc['cpu_percent']:.0f}% of one core)",
        f"latency ms   min {low:.3f}  mean {mean:.3f}",
    ]
    for name, value in doc["latency_ms"].items():
        lines.append(f"  {name:>6}   {value:9.3f}")
    if result.first_error:
        lines.append(f"first error: {result.first_error}")
    return "\n".join(lines)


async def run_bench(config: BenchConfig, progress: ProgressCallback | None = None) -> BenchResult:
    if config.clients < 1 or config.duration <= 0 or config.value_size < 0:
        raise ValueError("need clients >= 1, duration > 0 and value_size >= 0")
    result = BenchResult(config)
    value = (b"0123456789abcdef" * (config.value_size // 16 + 1))[: config.value_size]
    creds = (config.credentials or Credentials()).merged(Credentials.from_env())
    # One pool for every client; it must trust the cluster's CA for https endpoints.
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30, ssl=creds.ssl_context() or True)
    async with client_session(connector=connector, auto_decompress=False) as http:
        clients = [
            AsyncClient(
                config.endpoints, timeout=config.timeout, http_session=http, credentials=creds
            )
            for _ in range(config.clients)
        ]
        try:
            await asyncio.gather(*(c.discover_leader() for c in clients))
            if config.op == "get":
                await _populate(clients[0], value)
            await _measure(config, clients, value, result, progress)
        finally:
            for c in clients:
                await c.close()
    return result


async def _populate(client: AsyncClient, value: bytes) -> None:
    sem = asyncio.Semaphore(32)

    async def one(i: int) -> None:
        async with sem:
            await client.put(f"bench/get/{i}", value)

    await asyncio.gather(*(one(i) for i in range(GET_KEYS)))


async def _measure(
    config: BenchConfig,
    clients: list[AsyncClient],
    value: bytes,
    result: BenchResult,
    progress: ProgressCallback | None,
) -> None:
    stop = asyncio.Event()
    start = time.perf_counter()
    cpu_start = time.process_time()

    async def worker(n: int, client: AsyncClient) -> None:
        rng = random.Random(n)
        i = 0
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                if config.op == "put":
                    await client.put(f"bench/{n}/{i % KEYS_PER_CLIENT}", value)
                else:
                    key = f"bench/get/{rng.randrange(GET_KEYS)}"
                    await client.get(key, consistency=config.consistency)
            except RaftkvError as e:
                result.errors += 1
                result.first_error = result.first_error or str(e)
                await asyncio.sleep(0.01)
            else:
                result.latencies.append(time.perf_counter() - t0)
            i += 1

    tasks = [asyncio.create_task(worker(n, c)) for n, c in enumerate(clients)]
    last_ops = 0
    for tick in range(1, math.ceil(config.duration) + 1):
        target = start + min(float(tick), config.duration)
        await asyncio.sleep(max(0.0, target - time.perf_counter()))
        if tick <= config.duration and progress is not None:
            ops = result.ops
            progress(time.perf_counter() - start, ops, float(ops - last_ops), result.errors)
            last_ops = ops
    stop.set()
    await asyncio.gather(*tasks)  # in-flight requests finish and count; elapsed covers them
    result.cpu_seconds = time.process_time() - cpu_start
    result.elapsed = time.perf_counter() - start
