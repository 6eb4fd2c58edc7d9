"""Embedded nodes in one event loop: real TCP on 127.0.0.1, real storage in tmp dirs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest

from raftkv.embed import (
    CommandFailed,
    Counter,
    EncodeError,
    EventKind,
    EventStream,
    LeadershipEvent,
    Node,
    NodeOptions,
    NodeStopped,
)
from raftkv.embed.options import build_settings
from raftkv.embed.protocol import encode_envelope
from raftkv.errors import BadRequest, NotLeader, WrongCluster
from raftkv.runtime.faults import NetFaults
from raftkv.runtime.forward import PROPOSE, ForwardClient

from .harness import FAST, cluster, eventually, leader_of, make_peers, run_async


class Deposit(msgspec.Struct, tag=True):
    account: str
    amount: int


class Withdraw(msgspec.Struct, tag=True):
    account: str
    amount: int


class Balance(msgspec.Struct):
    account: str
    balance: int


class Bank:
    """A plain StateMachine with typed commands and results."""

    def __init__(self) -> None:
        self.accounts: dict[str, int] = {}

    def apply(self, command: Deposit | Withdraw) -> Balance:
        have = self.accounts.get(command.account, 0)
        if isinstance(command, Withdraw):
            if command.amount > have:
                raise ValueError(f"insufficient funds in {command.account}")
            have -= command.amount
        else:
            have += command.amount
        self.accounts[command.account] = have
        return Balance(command.account, have)

    def snapshot(self) -> bytes:
        return msgspec.msgpack.encode(self.accounts)

    def restore(self, data: bytes) -> None:
        self.accounts = msgspec.msgpack.decode(data, type=dict[str, int])


def bank_nodes(tmp_path: Path, **kwargs: Any) -> Any:
    return cluster(
        tmp_path,
        [Bank() for _ in range(3)],
        command_type=Deposit | Withdraw,
        result_type=Balance,
        **kwargs,
    )


def test_apply_from_any_node_and_read_linearizably(tmp_path: Path) -> None:
    async def main() -> None:
        async with bank_nodes(tmp_path) as nodes:
            leader = await leader_of(nodes)
            for i, node in enumerate(nodes):  # followers forward to the leader
                assert await node.apply(Deposit("a", 10)) == Balance("a", 10 * (i + 1))
            for node in nodes:  # every read sees every acknowledged write
                assert await node.read(lambda bank: bank.accounts["a"]) == 30
                assert await node.read(lambda bank: bank.accounts["a"], consistency="lease") == 30
            follower = next(n for n in nodes if n is not leader)
            with pytest.raises(CommandFailed, match="insufficient funds") as failed:
                await follower.apply(Withdraw("a", 31))
            assert failed.value.error_type == "ValueError" and failed.value.index > 0
            with pytest.raises(EncodeError):
                await follower.apply({"not": object()})
            with pytest.raises(BadRequest, match="nothing was applied"):
                await follower.apply({"not": "a command"})  # encodable, but not a Bank command
            status = leader.status()
            assert status.role == "leader" and status.applied_index == status.commit_index
            assert status.voters == ("n1", "n2", "n3")

    run_async(main)


def test_without_forwarding_a_follower_names_the_leader(tmp_path: Path) -> None:
    async def main() -> None:
        options = NodeOptions(tick_ms=20, forward=False)
        async with bank_nodes(tmp_path, options=options) as nodes:
            leader = await leader_of(nodes)
            follower = next(n for n in nodes if n is not leader)
            with pytest.raises(NotLeader) as e:
                await follower.apply(Deposit("a", 1))
            assert e.value.leader == leader.id
            with pytest.raises(NotLeader):
                await follower.read(lambda bank: bank.accounts)
            assert await follower.read(lambda bank: bank.accounts, consistency="stale") == {}
            assert await leader.apply(Deposit("a", 1)) == Balance("a", 1)

    run_async(main)


def test_leadership_events_and_transfer(tmp_path: Path) -> None:
    async def main() -> None:
        seen: list[LeadershipEvent] = []
        async with cluster(tmp_path, [Counter() for _ in range(3)]) as nodes:
            streams = {n.id: n.events() for n in nodes}
            for node in nodes:
                node.add_listener(seen.append)
            leader = await leader_of(nodes)
            target = next(n for n in nodes if n is not leader)
            assert await leader.transfer_leadership(target.id) == target.id
            await leader_of(nodes)
            assert target.is_leader

            async def kinds(node_id: str, want: EventKind) -> LeadershipEvent:
                while True:
                    event = await streams[node_id].next(5)
                    assert event is not None, f"no {want} on {node_id}"
                    if event.kind is want:
                        return event

            lost = await kinds(leader.id, EventKind.LOST_LEADERSHIP)
            won = await kinds(target.id, EventKind.BECAME_LEADER)
            assert won.term == target.status().term >= lost.term
            assert (won.node, won.leader, lost.node) == (target.id, target.id, leader.id)
            assert any(e.kind is EventKind.LEADER_CHANGED and e.leader == target.id for e in seen)

        async def drain(stream: EventStream) -> list[LeadershipEvent]:
            return [event async for event in stream]

        for stream in streams.values():  # streams end when their node stops
            await asyncio.wait_for(drain(stream), 2)

    run_async(main)


def test_restart_recovers_from_snapshot_and_log(tmp_path: Path) -> None:
    peers = make_peers(["n1"])
    options = NodeOptions(tick_ms=20, snapshot_every=5)

    async def main() -> None:
        counter = Counter()
        async with Node(counter, node_id="n1", peers=peers, data_dir=tmp_path, options=options):
            for _ in range(12):
                await counter.add(2)
            node = counter.attached_node  # snapshots are written off the loop: wait for them
            await eventually(
                lambda: asyncio.sleep(0, node.status().snapshot_index >= 10), what="a snapshot"
            )
        again = Counter()
        async with Node(again, node_id="n1", peers=peers, data_dir=tmp_path, options=options):
            assert await again.get() == 24
            assert await again.add(1) == 25

    run_async(main)


def test_a_lagging_follower_catches_up_from_a_snapshot(tmp_path: Path) -> None:
    options = NodeOptions(tick_ms=20, snapshot_every=10)

    async def main() -> None:
        counters = [Counter() for _ in range(3)]
        async with cluster(tmp_path, counters, options=options) as nodes:
            leader = await leader_of(nodes)
            behind = next(n for n in nodes if n is not leader)
            behind.faults.isolate = True
            mine = counters[nodes.index(leader)]
            for _ in range(25):
                await mine.add(1)
            await eventually(
                lambda: asyncio.sleep(0, leader.status().snapshot_index >= 20), what="snapshots"
            )
            behind.faults.isolate = False
            lagging = counters[nodes.index(behind)]
            await eventually(
                lambda: asyncio.sleep(0, lagging.value == 25), what="the follower to catch up"
            )
            assert behind.status().snapshot_index >= 20  # installed, not replayed
            assert await lagging.add(1) == 26

    run_async(main)


def test_forwarding_checks_the_cluster_id(tmp_path: Path) -> None:
    async def main() -> None:
        async with bank_nodes(tmp_path) as nodes:
            leader = await leader_of(nodes)
            peers = {n.id: n.settings.peers[n.id] for n in nodes}
            asking = next(n.id for n in nodes if n is not leader)  # a member, but of "other"
            foreign = build_settings(asking, peers, tmp_path / "x", "other", NodeOptions())
            client = ForwardClient(asking, foreign.cluster_id, foreign.peers.get, NetFaults())
            try:
                with pytest.raises(WrongCluster):
                    await client.call(leader.id, PROPOSE, b"anything", 2.0, write=True)
            finally:
                await client.close()

    run_async(main)


def test_lifecycle_errors(tmp_path: Path) -> None:
    peers = make_peers(["n1"])

    async def main() -> None:
        node = Node(Counter(), node_id="n1", peers=peers, data_dir=tmp_path, options=FAST)
        with pytest.raises(NodeStopped, match="not running"):
            await node.apply(1)
        async with node:
            assert await node.wait_for_leader() == "n1"
        with pytest.raises(NodeStopped):
            await node.apply(1)
        with pytest.raises(Exception, match="create a new Node"):
            await node.start()
        with pytest.raises(BadRequest, match="not to embedded node 'n2'"):
            other = Node(Counter(), node_id="n2", peers={"n2": peers["n1"]}, data_dir=tmp_path)
            await other.start()

    run_async(main)


class Flaky(Bank):
    """snapshot() fails: the node must keep running, with its log uncompacted."""

    def snapshot(self) -> bytes:
        raise RuntimeError("cannot snapshot right now")


def test_a_failing_snapshot_does_not_stop_the_node(tmp_path: Path) -> None:
    peers = make_peers(["n1"])
    options = NodeOptions(tick_ms=20, snapshot_every=3)

    async def main() -> None:
        node = Node(
            Flaky(),
            node_id="n1",
            peers=peers,
            data_dir=tmp_path,
            options=options,
            command_type=Deposit | Withdraw,
            result_type=Balance,
        )
        async with node:
            for _ in range(8):
                await node.apply(Deposit("a", 1))
            assert node.running and node.status().snapshot_index == 0
            assert await node.read(lambda bank: bank.accounts) == {"a": 8}

    run_async(main)


def test_a_retried_command_is_applied_once_cluster_wide(tmp_path: Path) -> None:
    """What apply() does after an unknown outcome: the same envelope again, through another
    node; the second answer comes from the session cache."""

    async def main() -> None:
        counters = [Counter() for _ in range(3)]
        async with cluster(tmp_path, counters) as nodes:
            leader = await leader_of(nodes)
            follower = next(n for n in nodes if n is not leader)
            command = Counter.add.encode_call(counters[0], (5,), {})
            client = await follower._open_session(
                5.0, "a test"
            )  # a session of its own, via the log
            envelope = encode_envelope(client, 1, 1, command)
            first, i1 = await leader._replicate(envelope, 5.0)
            again, i2 = await follower._replicate(envelope, 5.0)
            assert i2 > i1 and again.duplicate and not first.duplicate
            assert again.result == first.result
            assert [await c.get() for c in counters] == [5, 5, 5]

    run_async(main)
