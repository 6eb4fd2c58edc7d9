"""Snapshots: versioned, deterministic, and restore-then-continue equals never snapshotting."""

from __future__ import annotations

import contextlib

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
    Session,
    Txn,
    TxnDelete,
    TxnGet,
    TxnPut,
    encode_command,
)

SMALL = KvConfig(max_sessions=3, session_ttl_entries=6, max_session_results=2)

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
sessions = st.none() | st.builds(
    Session,
    st.sampled_from(["c1", "c2", "c3", "c4"]),
    st.integers(1, 3),
    st.sampled_from([0, 0, 0, 1, 2]),
)
Step = tuple[Command, Session | None] | bytes | None  # a command, a raw entry, or a noop
steps: st.SearchStrategy[Step] = st.one_of(
    st.tuples(commands, sessions),
    st.tuples(commands, sessions),
    st.tuples(commands, sessions),
    st.sampled_from([b"", b"\x01\xc1", b"\x01\x92\x93\xa3put\xa0\xc4\x00\xc0"]),
    st.none(),
)


def apply(store: KvStore, step: Step) -> Result | None:
    index = store.applied_index + 1
    match step:
        case None:
            store.apply_noop(index)
            return None
        case bytes():
            return store.apply(index, step)
        case (command, session):
            return store.apply(index, encode_command(command, session))
    raise AssertionError(step)


def _valid(step: Step) -> bool:
    if isinstance(step, tuple):
        try:
            encode_command(*step)
        except BadRequest:
            return False
    return True


@settings(max_examples=300, deadline=None)
@given(st.lists(steps.filter(_valid), max_size=40), st.data())
def test_restore_then_continue_equals_never_snapshotting(
    history: list[Step], data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(history)))
    straight = KvStore(SMALL)
    for step in history[:cut]:
        apply(straight, step)
    restored = KvStore.restore(straight.snapshot(), SMALL)
    assert restored.snapshot() == straight.snapshot()
    for step in history[cut:]:
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
    for step in history:
        assert apply(a, step) == apply(b, step)
    assert a.snapshot() == b.snapshot()


def test_snapshot_keeps_sessions_revision_and_index() -> None:
    kv = KvStore()
    kv.apply(1, encode_command(Put("a", b"1"), Session("c", 1)))
    kv.apply_noop(2)
    kv.apply(3, encode_command(Delete("a")))
    restored = KvStore.restore(kv.snapshot())
    assert (restored.revision, restored.applied_index, restored.get("a")) == (2, 3, None)
    retry = restored.apply(4, encode_command(Put("a", b"1"), Session("c", 1)))
    assert retry.duplicate
    assert restored.get("a") is None


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
    kv.apply(1, encode_command(Put("a", b"1"), Session("c", 1)))
    kv.apply(2, encode_command(Txn(success=(TxnPut("b", b"2"), TxnGet("a")))))
    raw = bytearray(kv.snapshot())
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] = data.draw(st.integers(0, 255))
    with contextlib.suppress(ProtocolError):
        KvStore.restore(bytes(raw))
