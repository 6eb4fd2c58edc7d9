"""The batteries on a real 3-node cluster: counter, dict, lock manager."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from raftkv.embed import Counter, LockManager, LockSessionExpired, NodeOptions, ReplicatedDict

from .harness import cluster, eventually, leader_of, run_async


def test_counter(tmp_path: Path) -> None:
    async def main() -> None:
        counters = [Counter() for _ in range(3)]
        async with cluster(tmp_path, counters) as nodes:
            await leader_of(nodes)
            a, b, c = counters
            assert await a.add() == 1
            assert await b.add(5) == 6
            assert await c.add(-2) == 4
            assert await a.set(10) == 4
            assert await b.compare_and_set(10, 11) is True
            assert await c.compare_and_set(10, 12) is False
            results = await asyncio.gather(*(x.add(1) for x in counters for _ in range(10)))
            assert sorted(results) == list(range(12, 42))  # each add saw a distinct value
            assert [await x.get() for x in counters] == [41, 41, 41]

    run_async(main)


def test_replicated_dict(tmp_path: Path) -> None:
    async def main() -> None:
        dicts = [ReplicatedDict() for _ in range(3)]
        async with cluster(tmp_path, dicts) as nodes:
            await leader_of(nodes)
            a, b, c = dicts
            assert await a.set("x", {"n": 1}) is None
            assert await b.set("x", [1, 2]) == {"n": 1}
            assert await c.set_default("x", 0) == [1, 2]
            assert await c.set_default("y", b"raw") == b"raw"
            assert await a.compare_and_set("y", b"raw", 3.5) is True
            assert await a.compare_and_set("y", b"raw", 4) is False
            assert await b.compare_and_set("new", None, "v") is True  # None: absent
            assert await b.update({"p": 1, "q": None}) == 5
            assert await c.delete("p") is True and await c.delete("p") is False
            for d in dicts:
                assert await d.get("x") == [1, 2]
                assert await d.get("missing", "dflt") == "dflt"
                assert await d.contains("q") and not await d.contains("p")
                assert await d.keys() == ["new", "q", "x", "y"]
                assert await d.size() == 4
            assert await a.items() == [("new", "v"), ("q", None), ("x", [1, 2]), ("y", 3.5)]
            assert await b.clear() == 4 and await c.size() == 0

    run_async(main)


def test_locks_hand_out_monotonic_fencing_tokens(tmp_path: Path) -> None:
    async def main() -> None:
        managers = [LockManager() for _ in range(3)]
        async with cluster(tmp_path, managers) as nodes:
            await leader_of(nodes)
            a, b, _ = managers
            async with a.session(5.0, "a") as sa, b.session(5.0, "b") as sb:
                assert await sa.acquire("job") == 1
                assert await sa.acquire("job") == 1  # re-acquiring a held lock: same token
                assert await sb.acquire("job") == 0  # held by someone else
                assert await sa.release("job") is True
                assert await sb.acquire("job", wait_s=1.0) == 2
                assert await sa.acquire("other") == 1  # tokens are per lock
                holder = await a.holder("job")
                assert holder is not None and (holder.session, holder.token) == (sb.id, 2)
            # closing sb's session released its lock; tokens keep growing
            async with a.session(5.0) as sc:
                assert await sc.acquire("job") == 3
            assert await b.last_token("job") == 3
            assert await b.holder("job") is None

    run_async(main)


def test_an_unrenewed_session_expires_and_its_locks_go(tmp_path: Path) -> None:
    async def main() -> None:
        managers = [LockManager(reap_interval_s=0.05) for _ in range(3)]
        async with cluster(tmp_path, managers) as nodes:
            await leader_of(nodes)
            a, b, c = managers
            dead = await a.open_session(0.3, "will not renew")  # no keepalives
            assert await a.acquire("job", dead) == 1
            async with b.session(0.3) as live:
                assert await live.acquire("job", wait_s=3.0) == 2  # after the expiry
                assert await c.session_info(dead) is None
                with pytest.raises(Exception, match="SessionGone"):
                    await a.acquire("job", dead)
                await asyncio.sleep(0.8)  # well past the ttl: keepalives hold it
                assert live.valid and (await c.holder("job")) is not None
                # the expiry was a log entry: every replica holds the same state
                await eventually(
                    lambda: asyncio.sleep(0, len({m.snapshot() for m in managers}) == 1),
                    what="identical replicas",
                )

    run_async(main)


def test_expire_loses_to_a_renewal(tmp_path: Path) -> None:
    async def main() -> None:
        managers = [LockManager(reap_interval_s=60) for _ in range(3)]  # no reaping here
        async with cluster(tmp_path, managers) as nodes:
            await leader_of(nodes)
            a = managers[0]
            session = await a.open_session(10.0)
            assert await a.keepalive(session) is True
            assert await a.expire(session, 0) == []  # renewed since: refused
            assert await a.session_info(session) is not None
            assert await a.expire(session, 1) == []  # its locks (none), and it is gone
            assert await a.session_info(session) is None
            assert await a.keepalive(session) is False

    run_async(main)


def test_sessions_survive_a_leader_change(tmp_path: Path) -> None:
    async def main() -> None:
        managers = [LockManager(reap_interval_s=0.05) for _ in range(3)]
        async with cluster(tmp_path, managers) as nodes:
            leader = await leader_of(nodes)
            i = next(i for i, n in enumerate(nodes) if n is not leader)
            async with managers[i].session(0.6) as s:
                assert await s.acquire("job") == 1
                await leader.stop()  # the leader goes away; a new one takes over the reaping
                rest = [n for n in nodes if n is not leader]
                await leader_of(rest)
                await asyncio.sleep(1.5)
                assert s.valid
                holder = await managers[i].holder("job")
                assert holder is not None and holder.session == s.id
            with pytest.raises(LockSessionExpired):
                await s.acquire("job")

    run_async(main)


def test_fencing_tokens_survive_leader_changes_snapshots_and_restarts(tmp_path: Path) -> None:
    """Tokens are state machine state: they keep growing across a leadership transfer, log
    compaction (snapshot_every=5), the death of the leader and a restart of every replica
    from its snapshot and log; a dead holder's lock goes with its session under a new leader."""

    async def main() -> None:
        opts = NodeOptions(tick_ms=20, snapshot_every=5, attempt_timeout_s=2.0)
        managers = [LockManager(reap_interval_s=0.05) for _ in range(3)]
        tokens: list[int] = []
        async with cluster(tmp_path, managers, options=opts) as nodes:
            first = await leader_of(nodes)
            me, target = (i for i, n in enumerate(nodes) if n is not first)
            m = managers[me]
            async with m.session(10.0) as s:
                for _ in range(6):
                    tokens.append(await s.acquire("job"))
                    assert await s.release("job")
                await first.transfer_leadership(nodes[target].id)
                assert (await leader_of(nodes)) is nodes[target]
                for _ in range(6):
                    tokens.append(await s.acquire("job"))
                    assert await s.release("job")
            assert tokens == list(range(1, 13))
            assert all(n.status().snapshot_index > 0 for n in nodes)  # the log was compacted

            dead = await m.open_session(0.5)  # a holder that dies: it never renews
            assert await m.acquire("job", dead) == 13
            await nodes[target].stop()  # and the leader dies too, before the expiry
            rest = [n for n in nodes if n is not nodes[target]]
            assert (await leader_of(rest)) is not nodes[target]
            async with m.session(10.0) as s2:
                # the new leader expires the dead session: its lock is free, with a new token
                assert await s2.acquire("job", wait_s=15.0) == 14
                assert await m.session_info(dead) is None

        fresh = [LockManager() for _ in range(3)]  # every replica restarts from its disk
        async with cluster(tmp_path, fresh, options=opts) as nodes:
            await leader_of(nodes)
            assert [await f.last_token("job") for f in fresh] == [14, 14, 14]
            async with fresh[0].session(10.0) as s3:
                assert await s3.acquire("job", wait_s=5.0) == 15

    run_async(main, timeout=90)
