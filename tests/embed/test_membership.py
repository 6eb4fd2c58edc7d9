"""Membership changes of an embedded cluster: grow 3 -> 4 voters through a learner, remove the
leader, restart with the changed configuration; real TCP on 127.0.0.1, real storage."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from raftkv.embed import Counter, Node
from raftkv.errors import BadRequest

from .harness import FAST, eventually, leader_of, make_peers, run_async

IDS = ["n1", "n2", "n3", "n4"]


def voters_are(node: Node[Counter], ids: list[str]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return node.voters == tuple(ids)

    return check


def test_grow_to_four_voters_then_remove_the_leader(tmp_path: Path) -> None:
    async def main() -> None:
        peers = make_peers(IDS)  # the address book holds n4 from the start
        first = ("n1", "n2", "n3")

        def node(nid: str, counter: Counter) -> Node[Counter]:
            return Node(
                counter,
                node_id=nid,
                peers=peers,
                data_dir=tmp_path / nid,
                cluster_id="grow",
                options=FAST,
                voters=first,
            )

        counters = {nid: Counter() for nid in IDS}
        nodes = {nid: node(nid, counters[nid]) for nid in IDS}
        try:
            for n in nodes.values():
                await n.start()
            three = [nodes[i] for i in first]
            leader = await leader_of(three, timeout=20)
            assert nodes["n4"].voters == first and not nodes["n4"].is_leader
            for _ in range(5):
                await counters["n1"].add(1)

            follower = next(n for n in three if n is not leader)
            with pytest.raises(BadRequest, match="not in peers"):
                await follower.add_learner("n9")
            with pytest.raises(BadRequest, match="not a learner"):
                await follower.promote("n4")
            await follower.add_voter("n4")  # forwarded to the leader
            assert await follower.add_voter("n4") > 0  # asking again is a no-op
            for n in nodes.values():
                await eventually(voters_are(n, IDS), 20, "4 voters")
            assert (await nodes["n4"].read(lambda c: c.value)) == 5  # caught up

            # Remove the leader itself: it steps down once its removal committed.
            await leader.remove_member(leader.id)
            rest = [n for n in nodes.values() if n is not leader]
            new = await leader_of(rest, timeout=20)
            assert new is not leader
            assert await counters[new.id].add(10) == 15
            for n in rest:
                await eventually(voters_are(n, [i for i in IDS if i != leader.id]), 20, "3 voters")
            assert not leader.is_leader
            await leader.stop()
            for n in rest:  # the three remaining voters are a full quorum without it
                assert await n.read(lambda c: c.value) == 15

            # A restart recovers the changed configuration from the log, not from voters=.
            survivor = rest[0]
            await survivor.stop()
            counters[survivor.id] = Counter()
            nodes[survivor.id] = again = node(survivor.id, counters[survivor.id])
            await again.start()
            assert leader.id not in again.voters and "n4" in again.voters
            assert await counters[survivor.id].add(1) == 16
        finally:
            for n in nodes.values():
                await n.stop()

    run_async(main, timeout=120)


def test_voters_must_be_peers(tmp_path: Path) -> None:
    peers = make_peers(["n1", "n2"])
    with pytest.raises(BadRequest, match="subset of peers"):
        Node(Counter(), node_id="n1", peers=peers, data_dir=tmp_path, voters=["n1", "n7"])
