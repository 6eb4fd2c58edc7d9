"""The one forwarding protocol (runtime/forward.py): what a follower asks of the leader, what
the client sees of it, and who may use it."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from raftkv.core.membership import ConfChange, ConfChangeKind
from raftkv.errors import (
    BadRequest,
    DiskError,
    DiskFull,
    Forbidden,
    ForwardFailed,
    NodeStopped,
    NoQuorum,
    NotCaughtUp,
    NotLeader,
    ProposalDropped,
    RaftkvError,
    Timeout,
    TooLarge,
    TooManyConnections,
    TooManyStreams,
    Unauthorized,
    WrongCluster,
)
from raftkv.kv.commands import Put, encode_command
from raftkv.runtime.admission import HOP_HEADER
from raftkv.runtime.forward import CLUSTER_HEADER, LEADER_HEADER, OpAnswer
from raftkv.runtime.http_errors import exception_from, from_exception

from .cluster import LocalCluster, run_async

ERRORS: list[RaftkvError] = [
    BadRequest("bad"),
    TooLarge("big"),
    Unauthorized("who"),
    Forbidden("no"),
    WrongCluster("other"),
    NotCaughtUp("lags", 7, 1200),
    ForwardFailed("cut"),
    NotLeader("not me", "n2"),
    NotLeader("nobody", None),
    ProposalDropped("dropped"),
    NoQuorum("alone"),
    NodeStopped("stopping"),
    DiskError("disk"),
    DiskFull("full"),
    TooManyConnections("busy"),
    TooManyStreams("streams"),
    Timeout("late"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_the_leaders_error_is_raised_again_identically(error: RaftkvError) -> None:
    """What the leader answers to a forwarded request, the follower answers to its client."""
    answer = from_exception(error)
    assert isinstance(answer.body, bytes)
    again = exception_from(answer.status, json.loads(answer.body))
    assert type(again) is type(error)
    copy = from_exception(again)
    assert (copy.status, copy.body, dict(copy.headers)) == (
        answer.status,
        answer.body,
        dict(answer.headers),
    )


def test_an_answer_no_leader_gives_is_an_unknown_outcome() -> None:
    unknown = exception_from(500, {"error": "internal", "message": "boom"})
    assert isinstance(unknown, ForwardFailed) and from_exception(unknown).status == 502


def test_follower_answers_name_the_leader_and_its_reads_are_linearizable(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with LocalCluster(tmp_path, 3) as c:
            leader = await c.leader()
            follower = next(n for n in c.ids if n != leader)
            async with c.client.put(c.url(follower, "/v1/kv/k"), data=b"1") as r:
                assert r.status == 200 and r.headers[LEADER_HEADER] == leader
                first = await r.json()
            for i in range(2, 12):  # each write at the leader is seen at once by the follower
                status, _ = await c.put(leader, "k", str(i).encode())
                assert status == 200
                for consistency in ("linearizable", "lease"):
                    status, value, headers = await c.get(follower, "k", consistency)
                    assert (status, value) == (200, str(i).encode()), consistency
                    assert headers[LEADER_HEADER] == leader
                    assert headers["X-Raftkv-Revision"] == str(first["revision"] + i - 1)
            status, value, headers = await c.get(follower, "k", "stale")
            assert status == 200 and LEADER_HEADER not in headers  # served here alone
            status, value, headers = await c.get(leader, "k")
            assert value == b"11" and LEADER_HEADER not in headers
            # Errors the leader answers come back as they are, naming the leader.
            url = c.url(follower, "/v1/kv/k?prev_revision=1")
            async with c.client.put(url, data=b"x") as r:
                assert r.status == 409 and r.headers[LEADER_HEADER] == leader
                assert (await r.json())["error"] == "conflict"

    run_async(main)


def test_membership_changes_through_a_follower_see_the_leaders_view(tmp_path: Path) -> None:
    async def main() -> None:
        async with LocalCluster(tmp_path, 3) as c:
            leader = await c.leader()
            follower = next(n for n in c.ids if n != leader)
            async with c.client.get(c.url(follower, "/v1/members")) as r:
                assert r.status == 200 and r.headers[LEADER_HEADER] == leader
                doc = await r.json()
            # the leader's view: it knows how far each member's log reaches
            assert all(m["match_index"] is not None for m in doc["members"]), doc
            assert all(m["caught_up"] is not None for m in doc["members"]), doc
            url = c.url(follower, f"/v1/members/{leader}/promote")
            async with c.client.post(url) as r:  # already a voter: done, at the leader
                assert r.status == 200 and (await r.json())["already"] is True
            async with c.client.post(c.url(follower, "/v1/members/n9/promote")) as r:
                assert r.status == 400 and "not a learner" in (await r.json())["message"]

    run_async(main)


def test_the_internal_routes_serve_members_only(tmp_path: Path) -> None:
    """Without TLS or tokens nothing is authenticated, but a forwarded op still needs the
    forwarding header to name a member and the cluster id to match."""

    async def main() -> None:
        async with LocalCluster(tmp_path, 3) as c:
            leader = await c.leader()
            follower = next(n for n in c.ids if n != leader)
            command = encode_command(Put("direct", b"v", None), None)
            url = c.url(leader, "/v1/internal/propose")
            refused = [
                ({}, 403, "forbidden"),
                ({CLUSTER_HEADER: "raftkv"}, 403, "forbidden"),
                ({CLUSTER_HEADER: "raftkv", HOP_HEADER: "n9"}, 403, "forbidden"),
                ({CLUSTER_HEADER: "other", HOP_HEADER: follower}, 403, "wrong_cluster"),
            ]
            for headers, status, code in refused:
                async with c.client.post(url, data=command, headers=headers) as r:
                    assert r.status == status, headers
                    assert (await r.json())["error"] == code
            assert (await c.get(leader, "direct"))[0] == 404  # nothing was applied
            member = {CLUSTER_HEADER: "raftkv", HOP_HEADER: follower}
            async with c.client.post(url, data=command, headers=member) as r:
                assert r.status == 200
                answer = msgspec.msgpack.decode(await r.read(), type=OpAnswer)
            assert answer.index > 0 and answer.result  # the store's encoded Result
            assert (await c.get(leader, "direct"))[:2] == (200, b"v")
            # Only the leader serves ops: a follower never forwards a forwarded request.
            async with c.client.post(
                c.url(follower, "/v1/internal/propose"),
                data=command,
                headers={CLUSTER_HEADER: "raftkv", HOP_HEADER: leader},
            ) as r:
                assert r.status == 503 and (await r.json())["leader"] == leader
            change = msgspec.msgpack.encode(ConfChange(ConfChangeKind.REMOVE, "n9"))
            async with c.client.post(
                c.url(leader, "/v1/internal/member"), data=change, headers=member
            ) as r:
                assert r.status == 200  # n9 is not a member: "already" done

    run_async(main)
