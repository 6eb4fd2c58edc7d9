"""Concurrent register clients: read / write / cas on a few keys, every op recorded.

Each client is one AsyncClient (its own session) running one operation at a time. Values
are unique ("<client>.<n>"), which makes histories easy to check and to read. Keys rotate:
after `ops_per_key` operations a key is retired for a fresh one, so each key's sub-history
(the unit the checker searches) stays small however long the run, as Jepsen's independent
keys do.

Outcome rules (the client's contract): a get is OK or FAIL (a read has no effect); a write
is OK on a definite answer, FAIL on a definite error (not sent, no leader, no quorum: not
applied), and UNKNOWN on a timeout, a lost connection, an expired session or anything
unexpected, since it may have committed.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from raftkv.chaos.history import OpRecord, Output
from raftkv.check import OpOutcome
from raftkv.client import (
    AsyncClient,
    Conflict,
    Consistency,
    NotFound,
    NotSupported,
    RetryPolicy,
    Unavailable,
)
from raftkv.errors import BadRequest, NoQuorum, NotLeader, ProposalDropped

# Errors that prove a request had no effect. Anything else raised by a write is UNKNOWN.
DEFINITE_ERRORS: tuple[type[BaseException], ...] = (
    BadRequest,
    Conflict,
    NotFound,
    NotSupported,
    NotLeader,
    NoQuorum,
    ProposalDropped,
    Unavailable,
)


@dataclass(frozen=True, slots=True)
class WorkloadConfig:
    clients: int = 5
    keys: int = 3  # keys in use at any time
    ops_per_key: int = 150  # a key is retired after this many operations
    # One operation, every retry included, and one HTTP attempt: per client, drawn from these
    # ranges. Short timeouts make UNKNOWN writes, which is what stresses the checker.
    op_timeout: tuple[float, float] = (1.0, 4.0)
    attempt_timeout: tuple[float, float] = (0.3, 2.5)
    think_s: float = 0.01  # mean pause between a client's operations
    get_ratio: float = 0.4
    put_ratio: float = 0.4  # the rest are cas
    lease_ratio: float = 0.2  # of the gets, how many use consistency=lease

    def __post_init__(self) -> None:
        if self.clients < 1 or self.keys < 1 or self.ops_per_key < 1:
            raise ValueError("clients, keys and ops_per_key must be >= 1")
        if not 0 < self.op_timeout[0] <= self.op_timeout[1]:
            raise ValueError("op_timeout must be a range 0 < A <= B")
        if not 0 <= self.get_ratio + self.put_ratio <= 1:
            raise ValueError("get_ratio + put_ratio must be in [0, 1]")


class KeySpace:
    """The keys in use. Invariant: a key gets at most ops_per_key operations, ever."""

    def __init__(self, size: int, ops_per_key: int) -> None:
        self._ops_per_key = ops_per_key
        self._next = 0
        self.active: list[str] = []
        self.used: list[str] = []
        self._count: dict[str, int] = {}
        self._seen: dict[str, list[str]] = {}  # values written to or read from each key
        for _ in range(size):
            self.active.append(self._fresh())

    def _fresh(self) -> str:
        key = f"k{self._next}"
        self._next += 1
        self.used.append(key)
        self._count[key] = 0
        self._seen[key] = []
        return key

    def take(self, rng: random.Random) -> str:
        slot = rng.randrange(len(self.active))
        key = self.active[slot]
        self._count[key] += 1
        if self._count[key] >= self._ops_per_key:
            self.active[slot] = self._fresh()
        return key

    def saw(self, key: str, value: str) -> None:
        seen = self._seen[key]
        seen.append(value)
        del seen[:-8]

    def recent(self, key: str) -> list[str]:
        return self._seen[key]


class ChaosWorkload:
    """Runs config.clients clients until stop is set; records go to self.records."""

    def __init__(
        self,
        endpoints: list[str],
        config: WorkloadConfig,
        seed: int,
        clock: Callable[[], float],
    ) -> None:
        self.endpoints = endpoints
        self.config = config
        self.clock = clock  # seconds since the run started
        self.keys = KeySpace(config.keys, config.ops_per_key)
        self.records: list[OpRecord] = []
        self._seed = seed
        self._rng = random.Random(seed)

    async def run(self, stop: asyncio.Event) -> None:
        """Run every client until stop is set; in-flight operations get op_timeout to finish,
        then are cancelled (a cancelled write is UNKNOWN)."""
        tasks = [
            asyncio.create_task(self._client(i, stop), name=f"chaos-client-{i}")
            for i in range(self.config.clients)
        ]
        await stop.wait()
        _, pending = await asyncio.wait(tasks, timeout=self.config.op_timeout[1] + 2.0)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _new_op(self, client: int, rng: random.Random) -> OpRecord:
        cfg = self.config
        key = self.keys.take(rng)
        op_id = len(self.records)
        roll = rng.random()
        if roll < cfg.get_ratio:
            lease = rng.random() < cfg.lease_ratio
            rec = OpRecord(
                op_id, client, "get", key, consistency="lease" if lease else "linearizable"
            )
        elif roll < cfg.get_ratio + cfg.put_ratio:
            rec = OpRecord(op_id, client, "put", key, value=f"{client}.{op_id}")
        else:
            recent = self.keys.recent(key)
            expected = rng.choice(recent[-3:]) if recent and rng.random() < 0.85 else None
            rec = OpRecord(op_id, client, "cas", key, value=f"{client}.{op_id}", expected=expected)
        self.records.append(rec)
        return rec

    async def _client(self, client: int, stop: asyncio.Event) -> None:
        cfg = self.config
        rng = random.Random(self._seed * 1000 + client)
        op_timeout = rng.uniform(*cfg.op_timeout)
        policy = RetryPolicy(
            timeout=op_timeout,
            attempt_timeout=min(op_timeout, rng.uniform(*cfg.attempt_timeout)),
            backoff_max=0.5,
            discovery_timeout=0.5,
        )
        async with AsyncClient(self.endpoints, policy=policy) as kv:
            while not stop.is_set():
                rec = self._new_op(client, rng)
                await self.execute(kv, rec)
                await asyncio.sleep(rng.expovariate(1.0 / cfg.think_s) if cfg.think_s else 0)

    async def execute(self, kv: AsyncClient, rec: OpRecord) -> None:
        """Run one operation and finish its record (also when cancelled)."""
        rec.call = self.clock()
        try:
            output = await _perform(kv, rec)
        except asyncio.CancelledError:
            rec.finish(OpOutcome.UNKNOWN, self.clock(), error="cancelled at the end of the run")
            raise
        except DEFINITE_ERRORS as e:
            rec.finish(OpOutcome.FAIL, self.clock(), error=_describe(e))
        except Exception as e:  # Timeout, SessionExpired, lost connection, anything unexpected
            rec.finish(OpOutcome.UNKNOWN, self.clock(), error=_describe(e))
        else:
            rec.finish(OpOutcome.OK, self.clock(), output)
            if isinstance(output, str):
                self.keys.saw(rec.key, output)
        if rec.is_write and rec.value is not None and rec.output is not False:
            self.keys.saw(rec.key, rec.value)


async def _perform(kv: AsyncClient, rec: OpRecord) -> Output:
    if rec.kind == "get":
        consistency: Consistency = "lease" if rec.consistency == "lease" else "linearizable"
        got = await kv.get(rec.key, consistency=consistency)
        return None if got is None else got.value.decode("utf-8", "replace")
    assert rec.value is not None
    if rec.kind == "put":
        await kv.put(rec.key, rec.value)
        return None
    result = await kv.cas(rec.key, rec.expected, rec.value)
    return result.succeeded


def _describe(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__


def monotonic_clock(t0: float) -> Callable[[], float]:
    return lambda: time.monotonic() - t0
