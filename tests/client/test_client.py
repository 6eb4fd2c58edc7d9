"""The async client against scripted fake nodes: routing, retries, sessions, errors."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from raftkv.client import (
    AsyncClient,
    Conflict,
    GetResult,
    NotSupported,
    RetryPolicy,
    Unavailable,
)
from raftkv.errors import BadRequest, SessionExpired, Timeout, TooLarge

from .fake_server import FakeNode, Seen, closed_port_url, fake_cluster

T = TypeVar("T")
FAST = RetryPolicy(timeout=5.0, attempt_timeout=1.0, backoff_base=0.01, backoff_max=0.05)


def run(coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def kv_requests(nodes: list[FakeNode], method: str | None = None) -> list[Seen]:
    return [
        s
        for n in nodes
        for s in n.seen
        if s.path.startswith(("/v1/kv/", "/v1/txn")) and method in (None, s.method)
    ]


def test_put_get_carry_a_session_and_go_to_the_leader() -> None:
    async def body() -> None:
        async with fake_cluster(3, leader=2) as nodes:
            async with AsyncClient([n.url for n in nodes], policy=FAST) as c:
                r1 = await c.put("x", "99")
                r2 = await c.put("y", b"\x00\xff")
                got = await c.get("x")
                missing = await c.get("nope")
                assert c.leader_endpoint == nodes[2].url
            assert (r1.revision, r2.revision) == (1, 2)
            assert got == GetResult("x", b"99", 1)
            assert missing is None
            assert kv_requests(nodes[:2]) == []  # discovery found n3, everything went there
            puts = kv_requests(nodes, "PUT")
            assert [p.headers["X-Raftkv-Seq"] for p in puts] == ["1", "2"]
            assert [p.headers["X-Raftkv-Ack"] for p in puts] == ["1", "2"]
            assert len({p.headers["X-Raftkv-Client"] for p in puts}) == 1
            gets = kv_requests(nodes, "GET")
            assert all("X-Raftkv-Seq" not in g.headers for g in gets)
            assert gets[0].query == {"consistency": "linearizable"}

    run(body())


def test_key_is_percent_encoded_and_consistency_passed() -> None:
    async def body() -> None:
        async with fake_cluster(1) as nodes:
            async with AsyncClient(nodes[0].url, policy=FAST) as c:
                await c.put("a/b c", "v")
                got = await c.get("a/b c", consistency="stale")
            assert got is not None and got.value == b"v"
            assert nodes[0].store.data.keys() == {"a/b c"}
            assert kv_requests(nodes, "GET")[0].query == {"consistency": "stale"}
            with pytest.raises(BadRequest, match="consistency"):
                await c.get("x", consistency="bogus")  # type: ignore[arg-type]

    run(body())


def test_dropped_response_is_retried_with_the_same_seq_and_applied_once() -> None:
    async def body() -> None:
        async with fake_cluster(3) as nodes:
            nodes[0].faults = ["drop"]
            async with AsyncClient([n.url for n in nodes], policy=FAST) as c:
                result = await c.put("x", "1")
            puts = kv_requests(nodes, "PUT")
            assert len(puts) == 2
            assert {(p.headers["X-Raftkv-Client"], p.headers["X-Raftkv-Seq"]) for p in puts} == {
                (puts[0].headers["X-Raftkv-Client"], "1")
            }
            assert nodes[0].store.applied == 1
            assert result.duplicate and result.revision == 1

    run(body())


@pytest.mark.parametrize("fault", ["503", "504"])
def test_retryable_answers_are_retried_with_the_same_seq(fault: Any) -> None:
    async def body() -> None:
        async with fake_cluster(3) as nodes:
            for n in nodes:
                n.faults = [fault, fault]
            async with AsyncClient([n.url for n in nodes], policy=FAST) as c:
                result = await c.put("x", "1")
            puts = kv_requests(nodes, "PUT")
            assert len(puts) >= 3
            assert {p.headers["X-Raftkv-Seq"] for p in puts} == {"1"}
            assert nodes[0].store.applied == 1
            assert result.revision == 1

    run(body())


def test_unreachable_endpoint_is_skipped() -> None:
    async def body() -> None:
        async with fake_cluster(1, leader=None) as nodes:
            eps = [closed_port_url(), nodes[0].url]
            async with AsyncClient(eps, policy=FAST) as c:
                assert (await c.put("x", "1")).revision == 1
                assert c.leader_endpoint is None  # nobody claimed leadership

    run(body())


def test_write_with_unknown_outcome_raises_timeout_saying_it_may_have_committed() -> None:
    async def body() -> None:
        async with fake_cluster(2) as nodes:
            for n in nodes:
                n.faults = ["hang"] * 20
            policy = RetryPolicy(timeout=0.8, attempt_timeout=0.2, backoff_base=0.01)
            async with AsyncClient([n.url for n in nodes], policy=policy) as c:
                with pytest.raises(Timeout, match="may have committed"):
                    await c.put("x", "1")
                with pytest.raises(Timeout) as read_err:
                    await c.get("x")
            assert "may have committed" not in str(read_err.value)

    run(body())


def test_no_reachable_endpoint_is_unavailable_not_timeout() -> None:
    async def body() -> None:
        policy = RetryPolicy(timeout=0.5, backoff_base=0.01, backoff_max=0.05)
        async with AsyncClient([closed_port_url(), closed_port_url()], policy=policy) as c:
            with pytest.raises(Unavailable, match="cannot reach any endpoint"):
                await c.put("x", "1")  # never sent anywhere: definitely not applied

    run(body())


def test_definite_errors_are_not_retried() -> None:
    async def body() -> None:
        async with fake_cluster(1) as nodes:
            nodes[0].faults = ["400", "413"]
            async with AsyncClient(nodes[0].url, policy=FAST) as c:
                with pytest.raises(BadRequest, match="must not be empty"):
                    await c.put("x", "1")
                with pytest.raises(TooLarge, match="limit"):
                    await c.put("x", "1")
                await c.put("x", "1")
                with pytest.raises(Conflict) as conflict:
                    await c.put("x", "2", prev_revision=0)
                assert conflict.value.mod_revision == 1
                assert (await c.put("x", "3", prev_revision=1)).revision == 2
            assert len(kv_requests(nodes, "PUT")) == 5

    run(body())


def test_the_first_write_opens_a_session_which_concurrent_writes_share() -> None:
    async def body() -> None:
        async with fake_cluster(1) as nodes:
            async with AsyncClient(nodes[0].url, policy=FAST) as c:
                assert c.client_id is None  # nothing opened before a write
                await asyncio.gather(*(c.put(f"k{i}", "v") for i in range(10)))
                assert c.client_id == "1-fake"
            opens = [s for s in nodes[0].seen if s.path == "/v1/sessions"]
            assert len(opens) == 1 and nodes[0].store.opened == 1
            puts = kv_requests(nodes, "PUT")
            assert {p.headers["X-Raftkv-Client"] for p in puts} == {"1-fake"}
            assert sorted(int(p.headers["X-Raftkv-Seq"]) for p in puts) == list(range(1, 11))

    run(body())


def test_an_expired_session_on_a_first_attempt_moves_the_write_to_a_new_session() -> None:
    async def body() -> None:
        async with fake_cluster(1) as nodes:
            async with AsyncClient(nodes[0].url, policy=FAST) as c:
                await c.put("x", "1")
                old = c.client_id
                nodes[0].faults = ["expired"]  # the server forgets the session
                second = await c.put("x", "2")
                assert c.client_id not in (None, old) and not second.duplicate
            refused, retried = kv_requests(nodes, "PUT")[1:]
            assert refused.headers["X-Raftkv-Client"] == old
            assert retried.headers["X-Raftkv-Client"] == c.client_id
            assert retried.headers["X-Raftkv-Seq"] == "1"  # numbered anew in the new session
            assert nodes[0].store.applied == 2  # each write once

    run(body())


def test_an_expired_session_after_an_attempt_that_may_have_applied_is_unknown() -> None:
    """The first attempt applied but its answer was lost; then the server forgot the
    session. Retrying in a new session could apply the write twice: report it unknown."""

    async def body() -> None:
        async with fake_cluster(1) as nodes:
            async with AsyncClient(nodes[0].url, policy=FAST) as c:
                await c.put("warm", "up")  # the session is open
                nodes[0].faults = ["drop", "expired"]
                with pytest.raises(SessionExpired, match="may or may not have been applied"):
                    await c.put("x", "1")
            assert nodes[0].store.applied == 2  # the put applied once, by its first attempt
            assert nodes[0].store.data["x"][0] == b"1"
            assert isinstance(SessionExpired("x"), Timeout)  # an unknown outcome, as documented

    run(body())


def test_delete_cas_and_txn() -> None:
    async def body() -> None:
        async with fake_cluster(1) as nodes:
            async with AsyncClient(nodes[0].url, policy=FAST) as c:
                created = await c.cas("k", None, "a")
                assert created.succeeded
                ok = await c.cas("k", "a", "b")
                assert ok.succeeded and ok.revision == 2
                failed = await c.cas("k", "a", "c")
                assert not failed.succeeded and failed.current == b"b"
                assert (await c.delete("k")).deleted == 1
                assert (await c.delete("k")).deleted == 0
            txns = kv_requests(nodes, "POST")
            assert [t.headers["X-Raftkv-Seq"] for t in txns] == ["1", "2", "3"]

    run(body())


def test_admin_operations_are_not_retried_after_an_unknown_outcome() -> None:
    async def body() -> None:
        async with fake_cluster(1) as nodes:
            nodes[0].faults = ["drop"]
            async with AsyncClient(nodes[0].url, policy=FAST) as c:
                with pytest.raises(Timeout, match="may have"):
                    await c.transfer_leader("n2")
                assert await c.transfer_leader("n3") == "n3"
                with pytest.raises(NotSupported, match="not implemented"):
                    await c.add_member("n4", "127.0.0.1:1", "http://127.0.0.1:2")
            transfers = [s for s in nodes[0].seen if s.path == "/v1/leader/transfer"]
            assert len(transfers) == 2

    run(body())


def test_status_members_and_cluster_status() -> None:
    async def body() -> None:
        async with fake_cluster(2, leader=1) as nodes:
            dead = closed_port_url()
            async with AsyncClient([nodes[0].url, nodes[1].url, dead], policy=FAST) as c:
                st = await c.status()
                assert (st.id, st.role, st.leader) == ("n2", "leader", "n2")
                assert st.raw["term"] == 3
                every = await c.cluster_status()
                assert list(every) == [nodes[0].url, nodes[1].url, dead]
                assert isinstance(every[dead], Unavailable)
                members = await c.members()
                assert members[0].id in ("n1", "n2")

    run(body())


def test_watch_resumes_after_a_lost_connection_without_gaps_or_repeats() -> None:
    async def body() -> None:
        async with fake_cluster(1) as nodes:
            node = nodes[0]
            node.store.events = [
                {"type": "put", "key": "p/a", "value": "1", "revision": 1},
                {"type": "put", "key": "p/b", "value": "2", "revision": 2},
                {"type": "put", "key": "p/c", "value": "3", "revision": 2},  # same txn
                {"type": "delete", "key": "p/a", "value": "", "revision": 3},
            ]
            node.watch_drop_after = 2  # cut the stream between the two events of revision 2
            got = []
            async with AsyncClient(node.url, policy=FAST) as c:
                async for ev in c.watch("p/", from_revision=1):
                    got.append((ev.type, ev.key, ev.revision))
                    if len(got) == 4:
                        break
            assert got == [
                ("put", "p/a", 1),
                ("put", "p/b", 2),
                ("put", "p/c", 2),
                ("delete", "p/a", 3),
            ]
            watches = [s for s in node.seen if s.path == "/v1/watch"]
            assert [w.query.get("from_revision") for w in watches] == ["1", "2"]

    run(body())


def test_a_stream_of_several_watches_resumes_without_gaps_or_repeats() -> None:
    async def body() -> None:
        async with fake_cluster(1) as nodes:
            node = nodes[0]
            node.store.events = [
                {"type": "put", "key": "p/a", "value": "1", "revision": 1},
                {"type": "put", "key": "q/b", "value": "2", "revision": 2},
                {"type": "put", "key": "p/c", "value": "3", "revision": 2},  # same txn
                {"type": "delete", "key": "p/a", "value": "", "revision": 3},
            ]
            node.watch_drop_after = 3  # cut between the two watches' copies of p/c
            got = []
            async with AsyncClient(node.url, policy=FAST) as c:
                async for ev in c.watch(["p/", "p/c", "q/"], from_revision=1):
                    got.append((ev.watch, ev.key, ev.revision))
                    if len(got) == 5:
                        break
            assert got == [
                (0, "p/a", 1),
                (2, "q/b", 2),
                (0, "p/c", 2),
                (1, "p/c", 2),
                (0, "p/a", 3),
            ]
            watches = [s for s in node.seen if s.path == "/v1/watch"]
            assert [w.query_string for w in watches] == [
                "prefix=p/&prefix=p/c&prefix=q/&from_revision=1",
                "prefix=p/&prefix=p/c&prefix=q/&from_revision=2",
            ]

    run(body())


def test_concurrent_writes_ack_the_lowest_unanswered_seq() -> None:
    async def body() -> None:
        async with fake_cluster(1) as nodes:
            nodes[0].faults = ["504", "ok", "ok"]
            async with AsyncClient(nodes[0].url, policy=FAST) as c:
                await asyncio.gather(c.put("a", "1"), c.put("b", "2"))
                await c.put("c", "3")
            puts = kv_requests(nodes, "PUT")
            by_seq = {(p.headers["X-Raftkv-Seq"], p.headers["X-Raftkv-Ack"]) for p in puts}
            # seq 1 and 2 were in flight together: both acked 1 while 1 was unanswered;
            # the last write acks 3 (1 and 2 answered).
            assert ("3", "3") in by_seq
            assert all(ack <= seq for seq, ack in by_seq)
            assert nodes[0].store.applied == 3

    run(body())
