"""Snapshots: versioned, deterministic, and restore-then-continue equals never snapshotting."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import msgspec
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from raftkv.errors import BadRequest, ProtocolError
from raftkv.kv import (
    Cas,
    Command,
    Compacted,
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    KvConfig,
    KvStore,
    Put,
    Result,
    ResultStatus,
    Session,
    Txn,
    TxnDelete,
    TxnGet,
    TxnPut,
    encode_command,
)
from raftkv.kv.commands import LEGACY_COMMAND_FORMAT, OpenSession
from raftkv.kv.sessions import SessionLimits, session_id

SMALL = KvConfig(sessions=SessionLimits(max_sessions=3, ttl_entries=6, max_results=2))

keys = st.sampled_from(["a", "b", "p/a", "p/b", "q\u00e9"])
prefixes = st.sampled_from(["", "p/", "q", "zz"])
values = st.binary(max_size=4)
revs = st.none() | st.integers(0, 12)
compares = st.builds(
    Compare,
    keys,
    st.sampled_from([CompareTarget.VERSION, CompareTarget.CREATE, CompareTarget.MOD]),
    st.sampled_from(CompareOp),
    st.integers(0, 6),
) | st.builds(Compare, keys, st.just(CompareTarget.VALUE), st.sampled_from(CompareOp), values)
txn_ops = st.lists(
    st.builds(TxnGet, keys)
    | st.builds(TxnGet, prefixes, st.just(True))
    | st.builds(TxnPut, keys, values),
    max_size=3,
)
commands: st.SearchStrategy[Command] = st.one_of(
    st.builds(Put, keys, values, revs),
    st.builds(Delete, keys, revs),
    st.builds(Cas, keys, st.none() | values, values),
    st.builds(
        Txn,
        st.lists(compares, max_size=2).map(tuple),
        txn_ops.map(tuple),
        st.builds(lambda p: (TxnDelete(p, prefix=True),), prefixes) | st.just(()),
    ),
)


@dataclass(frozen=True)
class Opened:
    """The session opened by the k-th OpenSession step of the history (made up if none)."""

    k: int
    seq: int
    ack: int


@dataclass(frozen=True)
class Legacy:
    """A format 1 entry (written by the previous version: the implicit-open rule)."""

    command: Command
    session: Session | None


NONCE = "n"
sessions = (
    st.none()
    | st.builds(Opened, st.integers(0, 2), st.integers(1, 2), st.sampled_from([0, 0, 0, 1, 2]))
    | st.builds(Session, st.sampled_from(["c1", "1-n"]), st.integers(1, 3), st.just(0))
)
old_sessions = st.none() | st.builds(
    Session, st.sampled_from(["c1", "c2", "c3"]), st.integers(1, 3), st.sampled_from([0, 1, 2])
)
# a command (in a session), OpenSession, an old entry, a raw entry, or a noop
Step = tuple[Command, Session | Opened | None] | OpenSession | Legacy | bytes | None
steps: st.SearchStrategy[Step] = st.one_of(
    st.tuples(commands, sessions),
    st.tuples(commands, sessions),
    st.tuples(commands, sessions),
    st.just(OpenSession(NONCE)),
    st.just(OpenSession(NONCE)),
    st.builds(Legacy, commands, old_sessions),
    st.sampled_from([b"", b"\x01\xc1", b"\x01\x92\x93\xa3put\xa0\xc4\x00\xc0"]),
    st.none(),
)


def entries(history: list[Step]) -> list[bytes | None]:
    """Each step as entry data (None: a noop); step i is applied at index i + 1."""
    opened: list[str] = []
    out: list[bytes | None] = []
    for i, step in enumerate(history):
        match step:
            case None | bytes():
                out.append(step)
            case OpenSession(nonce=nonce):
                opened.append(session_id(i + 1, nonce))
                out.append(encode_command(step))
            case Legacy(command=command, session=session):
                data = encode_command(command, session)
                out.append(bytes([LEGACY_COMMAND_FORMAT]) + data[1:])
            case (command, Opened(k=k, seq=seq, ack=ack)):
                cid = opened[k] if k < len(opened) else session_id(i + 1, NONCE)  # unknown
                out.append(encode_command(command, Session(cid, seq, ack)))
            case (command, Session() | None as session):
                out.append(encode_command(command, session))
    return out


def apply(store: KvStore, data: bytes | None) -> Result | None:
    index = store.applied_index + 1
    if data is None:
        store.apply_noop(index)
        return None
    return store.apply(index, data)


def _valid(step: Step) -> bool:
    match step:
        case (command, Session() | None as session):
            args: tuple[Command, Session | None] = (command, session)
        case (command, Opened()) | Legacy(command=command, session=None):
            args = (command, None)
        case Legacy(command=command, session=session):
            args = (command, session)
        case _:
            return True
    try:
        encode_command(*args)
    except BadRequest:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(st.lists(steps.filter(_valid), max_size=40), st.data())
def test_restore_then_continue_equals_never_snapshotting(
    history: list[Step], data: st.DataObject
) -> None:
    log = entries(history)
    cut = data.draw(st.integers(0, len(log)))
    straight = KvStore(SMALL)
    for step in log[:cut]:
        apply(straight, step)
    restored = KvStore.restore(straight.snapshot(), SMALL)
    assert restored.snapshot() == straight.snapshot()
    for step in log[cut:]:
        result = apply(restored, step)
        assert result == apply(straight, step)
        if result is not None:
            event(f"status={result.status.value} duplicate={result.duplicate}")
    assert restored.snapshot() == straight.snapshot()
    assert restored.range() == straight.range()
    assert (restored.revision, restored.applied_index) == (
        straight.revision,
        straight.applied_index,
    )


@settings(max_examples=100, deadline=None)
@given(st.lists(steps.filter(_valid), max_size=30))
def test_snapshots_are_deterministic(history: list[Step]) -> None:
    a, b = KvStore(SMALL), KvStore(SMALL)
    for step in entries(history):
        assert apply(a, step) == apply(b, step)
    assert a.snapshot() == b.snapshot()


def test_snapshot_keeps_sessions_revision_and_index() -> None:
    kv = KvStore()
    c = kv.apply(1, encode_command(OpenSession("n"))).client_id
    kv.apply(2, encode_command(Put("a", b"1"), Session(c, 1)))
    kv.apply(3, encode_command(Delete("a")))
    restored = KvStore.restore(kv.snapshot())
    assert (restored.revision, restored.applied_index, restored.get("a")) == (2, 3, None)
    retry = restored.apply(4, encode_command(Put("a", b"1"), Session(c, 1)))
    assert retry.duplicate
    assert restored.get("a") is None
    unknown = restored.apply(5, encode_command(Put("a", b"1"), Session("1-other", 1)))
    assert unknown.status is ResultStatus.SESSION_EXPIRED and restored.get("a") is None


def test_a_format_1_snapshot_still_loads_with_its_sessions() -> None:
    """Written by the previous version: cached results had no client_id field."""
    old_result = ["ok", 1, 0, 0, True, [], "", False]
    state = [1, 1, [["a", b"1", 1, 1, 1]], [["c-old", 1, 0, [[1, old_result]]]]]
    data = b"RKVS\x01" + msgspec.msgpack.encode(state)
    kv = KvStore.restore(data)
    retry = kv.apply(2, encode_command(Put("a", b"1"), Session("c-old", 1, 1)))
    assert (retry.duplicate, retry.revision, kv.revision) == (True, 1, 1)
    assert kv.snapshot()[4] == 2  # written back in the current format


def test_restored_history_starts_after_the_snapshot() -> None:
    kv = KvStore()
    kv.apply(1, encode_command(Put("a", b"1")))
    restored = KvStore.restore(kv.snapshot())
    with pytest.raises(Compacted):
        restored.events_since(1)
    assert restored.events_since(2) == []
    restored.apply(2, encode_command(Put("a", b"2")))
    assert [e.kv.value for e in restored.events_since(2)] == [b"2"]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "bad magic"),
        (b"RKVS", "bad magic"),
        (b"XXXX\x01\x90", "bad magic"),
        (b"RKVS\x09\x90", "unknown KV snapshot format 9"),
        (b"RKVS\x01\x90", "undecodable"),
        (b"RKVS\x01\x94\x01\x01\x90\x90extra", "undecodable"),
        (b"RKVS\x01\x94\xff\x01\x90\x90", "negative"),
    ],
)
def test_restore_rejects_what_is_not_a_snapshot(data: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        KvStore.restore(data)


@settings(max_examples=300)
@given(st.data())
def test_restore_of_mutated_snapshot_is_a_store_or_protocol_error(data: st.DataObject) -> None:
    kv = KvStore()
    c = kv.apply(1, encode_command(OpenSession("n"))).client_id
    kv.apply(2, encode_command(Put("a", b"1"), Session(c, 1)))
    kv.apply(3, encode_command(Txn(success=(TxnPut("b", b"2"), TxnGet("a")))))
    raw = bytearray(kv.snapshot())
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] = data.draw(st.integers(0, 255))
    with contextlib.suppress(ProtocolError):
        KvStore.restore(bytes(raw))


@settings(max_examples=100, deadline=None)
@given(st.lists(steps.filter(_valid), max_size=30))
def test_view_encodes_exactly_what_snapshot_gives(history: list[Step]) -> None:
    """The snapshot the driver takes off the loop (a view, encoded later in a thread) has
    the same bytes as the store's own snapshot at the same moment, even if the store moved on."""
    kv = KvStore(SMALL)
    for step in entries(history):
        apply(kv, step)
    expected, view = kv.snapshot(), kv.snapshot_view()
    kv.apply(kv.applied_index + 1, encode_command(Put("later", b"x")))
    assert view.encode() == expected
    buf = bytearray(b"prefix")
    view.encode_into(buf)
    assert bytes(buf) == b"prefix" + expected


def test_view_of_more_keys_than_one_sort_chunk_is_sorted() -> None:
    kv = KvStore()
    for i in range(3000, 0, -1):  # inserted in reverse: the view must sort across chunks
        kv.apply(3001 - i, encode_command(Put(f"k{i:05d}", b"v")))
    assert kv.snapshot_view().encode() == kv.snapshot()
