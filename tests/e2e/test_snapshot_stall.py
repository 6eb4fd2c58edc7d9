"""Issue #15 item 5 on real processes: snapshots of a large store must not stall the leader.

Three `raftkv serve` processes (default timing: 50 ms tick, heartbeat every tick, election
timeout 10-20 ticks), 32 concurrent writers PUT values under distinct keys to the leader while
the nodes snapshot (every --snapshot-entries entries at most: the log must also have grown as
large as the last snapshot). The old code encoded and wrote each snapshot inside the Ready
loop, so with a store of tens of MB no heartbeat left for up to seconds and the followers
elected a new leader. Now the snapshot is encoded and written on a worker thread.

Checked from outside, so the old code can be judged the same way: every node polled at 20 Hz
for role, term and leader, and at the end every node's raftkv_term and raftkv_leader_changes.
Checked from inside: each follower's raftkv_leader_silence_seconds_max (the longest time its
core went without a message from the leader) stays under a bound, and snapshots of a large
store were taken during the load (the leader's log says their sizes).

The full run (100 MiB of values, bound: half the shortest election timeout, 250 ms) is `make
stress-snapshots` (marked slow); make test runs a 64 MiB slice (bound: the election timeout).
A WAL fsync runs on the loop, so a disk that stalls (another process's writeback on a shared
disk) delays heartbeats as much as anything: on a busy machine these can fail without any
snapshot being at fault; rerun them on a quiet one.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from .harness import Cluster, serving_cluster

CLIENTS = 32
VALUE_SIZE = 1024
POLL_S = 0.05  # status poll period: 20 Hz per node
ELECTION_TIMEOUT_S = 10 * 0.050  # the default --election-ticks x --tick-ms (the shortest)
SNAPSHOT_FINISH_S = 15.0  # how long a snapshot started during the load may take to finish
# The largest snapshot the slice in make test is sure to take during its load. The schedule
# (driver/compaction.py) snapshots after 4,000-5,000 entries (jitter), and beyond 4 MiB of
# store only once the log holds as much as the last snapshot beyond 4 MiB: with ~2.1 KB per
# entry that is the third snapshot, at index 13.9k-18k of 32.8k, 28.8-37 MB. A fourth (about
# 60 MB) comes only when the third came early: a 40 MB bound failed a clean-clone run whose
# third snapshot was 36.6 MB.
LARGE_IN_SLICE = 25 * 10**6
_SNAPSHOT_LINE = re.compile(rb"snapshot at index (\d+) \((\d+) bytes\), log compacted")


@dataclass
class Observed:
    """What the 20 Hz status polls saw: (seconds since start, node, role, term, leader)."""

    samples: list[tuple[float, str, str, int, str | None]] = field(default_factory=list)
    failed_polls: dict[str, int] = field(default_factory=dict)
    slowest_poll: dict[str, float] = field(default_factory=dict)

    def changes(self) -> list[str]:
        """Every change of a node's (role, term, leader) after its first sample."""
        last: dict[str, tuple[str, int, str | None]] = {}
        out = []
        for t, nid, role, term, leader in self.samples:
            now = (role, term, leader)
            if nid in last and last[nid] != now:
                out.append(f"{t:6.2f}s {nid}: {last[nid]} -> {now}")
            last[nid] = now
        return out


@dataclass
class Load:
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _value(i: int, size: int) -> bytes:
    head = b"%08d:" % i
    return head + b"v" * (size - len(head))


async def _write(
    http: aiohttp.ClientSession, url: str, keys: int, load: Load, size: int = VALUE_SIZE
) -> None:
    """CLIENTS workers PUT keys k00000000.. (values of size bytes) until all are written;
    every answer must be 200."""
    next_key = iter(range(keys))

    async def worker() -> None:
        for i in next_key:
            try:
                async with http.put(f"{url}/v1/kv/k{i:08d}", data=_value(i, size)) as r:
                    body = await r.read()
                    if r.status == 200:
                        load.ok += 1
                    else:
                        load.failures.append(f"k{i:08d}: {r.status} {body[:200]!r}")
            except (aiohttp.ClientError, TimeoutError) as e:
                load.failures.append(f"k{i:08d}: {type(e).__name__} {e}")

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    load.seconds = time.monotonic() - started


async def _poll(
    http: aiohttp.ClientSession,
    cluster: Cluster,
    ids: list[str],
    seen: Observed,
    stop: asyncio.Event,
) -> None:
    started = time.monotonic()

    async def one(nid: str) -> None:
        while not stop.is_set():
            due = time.monotonic() + POLL_S
            sent = time.monotonic()
            try:
                async with http.get(cluster.url(nid) + "/v1/status") as r:
                    doc = await r.json()
                took = time.monotonic() - sent
                seen.slowest_poll[nid] = max(seen.slowest_poll.get(nid, 0.0), took)
                seen.samples.append((sent - started, nid, doc["role"], doc["term"], doc["leader"]))
            except (aiohttp.ClientError, TimeoutError):
                seen.failed_polls[nid] = seen.failed_polls.get(nid, 0) + 1
            await asyncio.sleep(max(0.0, due - time.monotonic()))

    await asyncio.gather(*(one(nid) for nid in ids))


def _metrics(cluster: Cluster, nid: str) -> dict[str, float]:
    """Every sample in the node's /metrics, by its full name with labels."""
    import urllib.request  # noqa: PLC0415

    with urllib.request.urlopen(cluster.url(nid) + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def _snapshots_logged(cluster: Cluster, nid: str) -> list[tuple[int, int]]:
    """(index, bytes) of every snapshot the node's log says it took."""
    text = (cluster.data_dir / nid / "node.log").read_bytes()
    return [(int(m[1]), int(m[2])) for m in _SNAPSHOT_LINE.finditer(text)]


def _snapshots_finished(cluster: Cluster, nid: str, large: int) -> list[tuple[int, int]]:
    """_snapshots_logged once one of at least `large` bytes is among them, or after
    SNAPSHOT_FINISH_S."""
    deadline = time.monotonic() + SNAPSHOT_FINISH_S
    while True:
        taken = _snapshots_logged(cluster, nid)
        if any(size >= large for _, size in taken) or time.monotonic() > deadline:
            return taken
        time.sleep(0.1)


async def _load_and_watch(
    cluster: Cluster,
    ids: list[str],
    leader: str,
    keys: int,
    size: int,
    seen: Observed,
    load: Load,
) -> None:
    timeout = aiohttp.ClientTimeout(total=30)
    async with (
        aiohttp.ClientSession(timeout=timeout) as writers,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as pollers,
    ):
        stop = asyncio.Event()
        polling = asyncio.create_task(_poll(pollers, cluster, ids, seen, stop))
        try:
            await _write(writers, cluster.url(leader), keys, load, size)
        finally:
            stop.set()
            await polling


def _settled(cluster: Cluster, ids: list[str]) -> str:
    """The leader, once every node names it."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        docs = [cluster.status(nid) for nid in ids]
        leaders = {d["leader"] if d is not None else None for d in docs}
        if len(leaders) == 1 and None not in leaders:
            return str(leaders.pop())
        time.sleep(0.1)
    raise AssertionError("the nodes did not agree on a leader within 30 s")


TAKEN = 'raftkv_snapshots_total{kind="taken"}'
INSTALLED = 'raftkv_snapshots_total{kind="installed"}'


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.0f} ms"


def _node_line(nid: str, b: dict[str, float], a: dict[str, float], seen: Observed) -> str:
    return (
        f"{nid}: term {b['raftkv_term']:.0f}->{a['raftkv_term']:.0f}, leader changes "
        f"{b['raftkv_leader_changes_total']:.0f}->{a['raftkv_leader_changes_total']:.0f}, "
        f"snapshots taken {a[TAKEN]:.0f} installed {a[INSTALLED]:.0f}, longest leader "
        f"silence {_ms(a.get('raftkv_leader_silence_seconds_max'))}, longest loop lag "
        f"{_ms(a.get('raftkv_loop_lag_seconds_max'))}, slowest status poll "
        f"{_ms(seen.slowest_poll.get(nid))}, failed polls {seen.failed_polls.get(nid, 0)}"
    )


def run_snapshot_load(
    tmp_path: Path, keys: int, size: int, snapshot_entries: int, large: int, silence: float
) -> None:
    """Write keys x size bytes to the leader of a fresh 3-node cluster snapshotting every
    snapshot_entries entries (at most); fail unless there was no election, no failed write,
    a snapshot of at least `large` bytes on the leader during the load, and every follower's
    longest leader silence stayed under `silence` seconds."""
    serve_args = ("--snapshot-entries", str(snapshot_entries))
    with serving_cluster(tmp_path, 3, serve_args) as cluster:
        ids = [n.id for n in cluster.topology.nodes]
        leader = _settled(cluster, ids)
        before = {nid: _metrics(cluster, nid) for nid in ids}
        seen, load = Observed(), Load()
        asyncio.run(_load_and_watch(cluster, ids, leader, keys, size, seen, load))
        # A snapshot the leader started near the end of the load may still be being written
        # (the store doubles between snapshots, so the largest comes last): let it finish,
        # and read the heartbeat metrics after it, so they cover all of it.
        taken = _snapshots_finished(cluster, leader, large)  # all started during the load
        after = {nid: _metrics(cluster, nid) for nid in ids}

    lines = [
        f"{keys} keys x {size} B = {keys * size / 2**20:.1f} MiB of values in "
        f"{load.seconds:.1f}s ({load.ok / max(load.seconds, 1e-9):.0f} writes/s), "
        f"{len(load.failures)} failed; leader {leader}",
        f"leader's snapshots (index, MB): {[(i, round(b / 1e6, 1)) for i, b in taken]}",
    ]
    lines += [_node_line(nid, before[nid], after[nid], seen) for nid in ids]
    changes = seen.changes()
    lines += ["role/term/leader changes seen by the 20 Hz polls:", *changes[:40]]
    summary = "\n".join(lines)
    print(summary)

    problems = list(_problems(ids, leader, before, after, seen, load, taken, large, silence))
    assert not problems, "\n".join(["", *problems, "--- figures ---", summary])


def _problems(
    ids: list[str],
    leader: str,
    before: dict[str, dict[str, float]],
    after: dict[str, dict[str, float]],
    seen: Observed,
    load: Load,
    taken: list[tuple[int, int]],
    large: int,
    bound: float,
) -> Iterator[str]:
    if load.failures:
        yield f"{len(load.failures)} writes failed, first: {load.failures[:3]}"
    for nid in ids:
        a, b = after[nid], before[nid]
        if a["raftkv_term"] != b["raftkv_term"]:
            yield f"{nid}: term moved {b['raftkv_term']:.0f} -> {a['raftkv_term']:.0f}"
        moved = a["raftkv_leader_changes_total"] - b["raftkv_leader_changes_total"]
        if moved:
            yield f"{nid}: its known leader changed {moved:.0f} times"
    if seen.changes():
        yield f"the polls saw {len(seen.changes())} role/term/leader changes"
    if not taken or max(size for _, size in taken) < large:
        yield f"no snapshot of at least {large} bytes on the leader during the load: {taken}"
    for nid in ids:
        if nid == leader:
            continue
        silence = after[nid].get("raftkv_leader_silence_seconds_max")
        if silence is None or silence >= bound:
            yield f"{nid}: longest leader silence {silence} s, not under {bound} s"


@pytest.mark.timeout(300)
def test_snapshots_keep_heartbeats_on_time(tmp_path: Path) -> None:
    """The slice in make test: 64 MiB in 2 KiB values, snapshots every 4,000 entries at most.
    Its bound is the shortest election timeout (no follower's election timer could have
    fired): make test runs it beside other tests on 2 cores, where a WAL fsync on a shared
    disk alone was seen to take 270 ms with no snapshot anywhere. With the snapshot job
    planted back on the loop, the followers went 486-705 ms without a heartbeat here."""
    run_snapshot_load(
        tmp_path, 32 * 1024, 2048, snapshot_entries=4000, large=LARGE_IN_SLICE,
        silence=ELECTION_TIMEOUT_S,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_snapshots_of_100mb_store_keep_heartbeats_on_time(tmp_path: Path) -> None:
    """Issue #15's "done when": a store of 100 MiB of values, default snapshot settings, and
    heartbeats with a margin: no follower went half an election timeout without one."""
    run_snapshot_load(
        tmp_path, 100 * 1024, VALUE_SIZE, snapshot_entries=10_000, large=50 * 10**6,
        silence=ELECTION_TIMEOUT_S / 2,
    )  # fmt: skip


OFF_VALUE_SIZE = 64 * 1024
OFF_KEYS = 1100  # 70.4 MB of values: over the 64 MiB --snapshot-bytes default


@pytest.mark.timeout(300)
def test_snapshot_entries_0_means_no_snapshot_ever(tmp_path: Path) -> None:
    """--snapshot-entries 0 turns snapshots off: none is taken even once the log holds more
    than --snapshot-bytes (64 MiB by default), which used to trigger one anyway."""
    with serving_cluster(tmp_path, 3, ("--snapshot-entries", "0")) as cluster:
        ids = [n.id for n in cluster.topology.nodes]
        leader = _settled(cluster, ids)
        load = Load()

        async def write() -> None:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                await _write(http, cluster.url(leader), OFF_KEYS, load, OFF_VALUE_SIZE)

        asyncio.run(write())
        assert OFF_KEYS * OFF_VALUE_SIZE > 64 * 2**20
        deadline = time.monotonic() + 30
        status = cluster.status(leader)
        assert status is not None
        commit = status["commit_index"]
        while time.monotonic() < deadline:
            docs = [cluster.status(nid) for nid in ids]
            if all(d is not None and d["applied_index"] >= commit for d in docs):
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"not every node applied up to {commit}")
        for nid in ids:
            m = _metrics(cluster, nid)
            assert (m[TAKEN], m[INSTALLED], m["raftkv_snapshot_index"]) == (0, 0, 0), nid
            assert m["raftkv_applied_index"] >= commit
            assert list((cluster.data_dir / nid).rglob("snap-*.snap")) == []
            assert _snapshots_logged(cluster, nid) == []
        assert load.failures == [] and load.ok == OFF_KEYS and commit > OFF_KEYS
