"""The decorator layer without a cluster: encoding, dispatch, snapshots, clear errors."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from raftkv.embed import (
    CommandFailed,
    EncodeError,
    Node,
    NotAttached,
    Replicated,
    query,
    replicated,
)
from raftkv.embed.replicated import Call
from raftkv.errors import BadRequest

from .harness import FAST, make_peers, run_async


class Point(msgspec.Struct, frozen=True):
    x: int
    y: int


class Shapes(Replicated):
    points: list[Point]
    names: dict[str, int]

    def __init__(self) -> None:
        self.points = []
        self.names = {}
        self._cache = "private attributes are not state"

    @replicated
    def add(self, p: Point, name: str = "", *, weight: float = 1.0) -> Point:
        self.points.append(p)
        if name:
            self.names[name] = len(self.points) - 1
        return Point(p.x * 2, p.y * 2)

    @replicated(name="legacy_clear")
    def clear(self) -> int:
        n = len(self.points)
        self.points = []
        return n

    @replicated
    def only_positional(self, a: int, /, b: int) -> int:
        return a - b

    @replicated
    def nested(self) -> int:
        return asyncio.run(self.clear())

    @query
    def count(self) -> int:
        return len(self.points)


def apply_call(obj: Replicated, command: bytes) -> Any:
    call = msgspec.msgpack.decode(command, type=Call)
    return obj.apply(call)


def test_calls_encode_typed_arguments_and_apply_on_any_replica() -> None:
    leader, follower = Shapes(), Shapes()
    command = Shapes.add.encode_call(leader, (Point(1, 2), "a"), {"weight": 2})
    for obj in (leader, follower):
        assert apply_call(obj, command) == Point(2, 4)
        assert obj.points == [Point(1, 2)] and obj.names == {"a": 0}
    assert apply_call(leader, Shapes.clear.encode_call(leader, (), {})) == 1
    assert msgspec.msgpack.decode(Shapes.clear.encode_call(leader, (), {}))[0] == "legacy_clear"
    assert apply_call(leader, Shapes.only_positional.encode_call(leader, (5, 3), {})) == 2


def test_bad_arguments_are_refused_before_anything_is_proposed() -> None:
    obj = Shapes()
    with pytest.raises(EncodeError, match=re.escape("argument 'name' of Shapes.add()")):
        Shapes.add.encode_call(obj, (Point(1, 2), object()), {})
    with pytest.raises(BadRequest, match="does not fit its type"):
        Shapes.add.encode_call(obj, ("not a point",), {})
    with pytest.raises(BadRequest, match=re.escape("Shapes.add()")):
        Shapes.add.encode_call(obj, (), {})  # missing argument
    with pytest.raises(BadRequest, match="no replicated method"):
        obj.apply(Call("nope", msgspec.Raw(b"\x80")))


def test_unattached_objects_say_so() -> None:
    obj = Shapes()
    with pytest.raises(NotAttached, match="no Node replicates"):
        _ = obj.add(Point(1, 1))
    with pytest.raises(NotAttached):
        _ = obj.count()
    assert obj.count.local() == 0  # a local read needs no node


def test_snapshot_round_trip_keeps_types() -> None:
    a = Shapes()
    apply_call(a, Shapes.add.encode_call(a, (Point(3, 4), "p"), {}))
    b = Shapes()
    b.restore(a.snapshot())
    assert b.points == [Point(3, 4)] and isinstance(b.points[0], Point)
    assert b.names == {"p": 0}


def test_undeclared_state_is_refused_at_attach(tmp_path: Path) -> None:
    class Sloppy(Replicated):
        declared: int

        def __init__(self) -> None:
            self.declared = 0
            self.undeclared = 1

    with pytest.raises(BadRequest, match="undeclared attributes \\['undeclared'\\]"):
        Node(Sloppy(), node_id="n1", peers=make_peers(["n1"]), data_dir=tmp_path)


def test_star_args_cannot_be_replicated() -> None:
    with pytest.raises(TypeError, match="\\*args"):

        class Bad(Replicated):
            @replicated
            def f(self, *items: int) -> None: ...


def test_replicated_methods_cannot_be_called_from_apply(tmp_path: Path) -> None:
    obj = Shapes()

    async def main() -> None:
        async with Node(
            obj, node_id="n1", peers=make_peers(["n1"]), data_dir=tmp_path, options=FAST
        ):
            with pytest.raises(CommandFailed, match="NotAttached"):
                await obj.nested()
            assert await obj.add(Point(1, 1)) == Point(2, 2)
            assert await obj.count() == 1

    run_async(main)
