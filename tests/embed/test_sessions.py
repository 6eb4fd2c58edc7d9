"""An embedded Node's session: opened through the log, reopened when the replicas forgot it,
and an in-flight command whose session expired is reported unknown, never applied twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from raftkv.embed import NodeOptions, SessionLimits
from raftkv.embed.protocol import ApplyStatus, encode_envelope
from raftkv.errors import SessionExpired
from raftkv.kv.sessions import session_id

from .harness import FAST, eventually, leader_of, run_async
from .test_node import Deposit, bank_nodes


def test_a_node_opens_its_session_through_the_log_and_unknown_ones_are_refused(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with bank_nodes(tmp_path) as nodes:
            leader = await leader_of(nodes)
            node = next(n for n in nodes if n is not leader)
            assert node.client_id is None  # nothing opened before a command
            outcome, index = await node.submit(deposit(5))
            assert outcome.status is ApplyStatus.OK
            client = node.client_id
            assert client is not None
            opened_at, _, nonce = client.partition("-")
            assert client == session_id(int(opened_at), nonce) and int(opened_at) < index
            # A command naming a session no replica opened is refused, not applied.
            for made_up in ("guess", session_id(int(opened_at), "other")):
                envelope = encode_envelope(made_up, 1, 1, deposit(7))
                refused, _ = await node._replicate(envelope, 5.0)
                assert refused.status is ApplyStatus.SESSION_EXPIRED and not refused.duplicate
            for n in nodes:
                await n.barrier()
                assert n.machine.accounts == {"a": 5}
            assert (await node.apply(Deposit("a", 1))).balance == 6
            assert node.client_id == client  # the same session all along

    run_async(main)


def deposit(amount: int) -> bytes:
    return msgspec.msgpack.encode(Deposit("a", amount))


CAP_1 = NodeOptions(
    tick_ms=FAST.tick_ms,
    apply_timeout_s=FAST.apply_timeout_s,
    attempt_timeout_s=FAST.attempt_timeout_s,
    sessions=SessionLimits(max_sessions=1),
)


def test_nodes_reopen_their_sessions_when_the_replicas_forgot_them(tmp_path: Path) -> None:
    """Only one session is remembered: two nodes writing in turn evict each other's, and
    each command (refused in its old session, never applied) goes through in a new one."""

    async def main() -> None:
        async with bank_nodes(tmp_path, options=CAP_1) as nodes:
            await leader_of(nodes)
            a, b = nodes[0], nodes[1]
            ids: list[str | None] = []
            for _ in range(3):
                await a.apply(Deposit("a", 1))
                await b.apply(Deposit("b", 1))
                ids += [a.client_id, b.client_id]
            assert len(set(ids)) == 6  # a new session each time
            accounts = await a.read(lambda bank: dict(bank.accounts))
            assert accounts == {"a": 3, "b": 3}  # each command applied once

    run_async(main)


SLOW_ELECTIONS = NodeOptions(
    tick_ms=20,
    election_ticks=50,  # the leader keeps leading for a second without a quorum
    apply_timeout_s=20.0,
    attempt_timeout_s=0.3,
    sessions=SessionLimits(max_sessions=1),
)


def test_an_in_flight_command_whose_session_expired_is_unknown_not_applied_twice(
    tmp_path: Path,
) -> None:
    """f's command reaches the leader, but nothing commits (f's acks are lost, the third
    node is down), so f's attempt times out: the outcome is unknown to f. Meanwhile the
    leader opens a session of its own, which, once committed after f's command, evicts f's
    session (one session is remembered). f's retry is then refused: f must report that the
    command may or may not have been applied, not apply it again in a new session."""

    async def main() -> None:
        async with bank_nodes(tmp_path, options=SLOW_ELECTIONS) as nodes:
            leader = await leader_of(nodes)
            f, down = (n for n in nodes if n is not leader)
            await f._sessions.current(
                5.0, "a test"
            )  # f's session is open; its first command follows
            await down.stop()
            f.faults.loss = 1.0  # f's Raft messages are lost: no commits for now
            appended = leader.status().last_index
            pending = asyncio.create_task(f.apply(Deposit("a", 10)))

            async def grew() -> bool:
                return leader.status().last_index > appended

            await eventually(grew, what="f's command appended at the leader")
            appended = leader.status().last_index
            other = asyncio.create_task(leader.apply(Deposit("b", 1)))  # opens a session first
            await eventually(grew, what="the leader's session appended")
            await asyncio.sleep(0.6)  # f's first attempt times out: its outcome is unknown
            f.faults.loss = 0.0
            with pytest.raises(SessionExpired, match="may or may not have been applied"):
                await pending
            await other
            assert await f.read(lambda bank: dict(bank.accounts)) == {"a": 10, "b": 1}
            # f's next command is refused in the old session, so it certainly was not applied:
            # it goes through in a new session, once.
            assert (await f.apply(Deposit("a", 100))).balance == 110

    run_async(main, timeout=60)
