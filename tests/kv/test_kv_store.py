"""KvStore operations: put/get/delete/cas/txn, revisions and versions, ranges, watch history."""

from __future__ import annotations

import pytest

from raftkv.errors import BadRequest
from raftkv.kv import (
    Cas,
    Command,
    Compacted,
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    DeleteResponse,
    Event,
    EventType,
    GetResponse,
    KeyValue,
    KvConfig,
    KvStore,
    Put,
    PutResponse,
    Result,
    ResultStatus,
    Txn,
    TxnDelete,
    TxnGet,
    TxnPut,
    encode_command,
)


def run(store: KvStore, command: Command) -> Result:
    return store.apply(store.applied_index + 1, encode_command(command))


def test_put_get_and_revisions() -> None:
    kv = KvStore()
    assert (kv.revision, kv.applied_index, kv.get("a")) == (0, 0, None)
    r = run(kv, Put("a", b"1"))
    assert (r.status, r.revision, r.prev_revision, r.ok) == (ResultStatus.OK, 1, 0, True)
    assert kv.get("a") == KeyValue("a", b"1", create_revision=1, mod_revision=1, version=1)
    run(kv, Put("b", b"x"))
    r = run(kv, Put("a", b"2"))
    assert (r.revision, r.prev_revision) == (3, 1)
    assert kv.get("a") == KeyValue("a", b"2", create_revision=1, mod_revision=3, version=2)
    assert (kv.revision, kv.applied_index, len(kv)) == (3, 3, 2)


def test_binary_and_empty_values() -> None:
    kv = KvStore()
    run(kv, Put("bin", bytes(range(256))))
    run(kv, Put("empty", b""))
    assert kv.get("bin") == KeyValue("bin", bytes(range(256)), 1, 1, 1)
    assert kv.get("empty") == KeyValue("empty", b"", 2, 2, 1)


def test_delete_resets_version_and_absent_delete_changes_nothing() -> None:
    kv = KvStore()
    run(kv, Put("a", b"1"))
    run(kv, Put("a", b"2"))
    r = run(kv, Delete("a"))
    assert (r.status, r.deleted, r.revision, r.prev_revision) == (ResultStatus.OK, 1, 3, 2)
    assert kv.get("a") is None
    r = run(kv, Delete("a"))
    # no change, no new revision
    assert (r.status, r.deleted, r.revision) == (ResultStatus.OK, 0, 3)
    run(kv, Put("a", b"3"))
    assert kv.get("a") == KeyValue("a", b"3", create_revision=4, mod_revision=4, version=1)


def test_put_with_prev_revision() -> None:
    kv = KvStore()
    assert run(kv, Put("a", b"1", prev_revision=0)).ok  # 0: must not exist
    r = run(kv, Put("a", b"x", prev_revision=0))
    assert (r.status, r.prev_revision, r.revision) == (ResultStatus.CONFLICT, 1, 1)
    assert "precondition failed" in r.error
    assert run(kv, Put("a", b"2", prev_revision=1)).ok
    r = run(kv, Put("a", b"3", prev_revision=1))
    assert (r.status, r.prev_revision) == (ResultStatus.CONFLICT, 2)
    assert run(kv, Put("missing", b"v", prev_revision=5)).status is ResultStatus.CONFLICT
    assert kv.get("a") == KeyValue("a", b"2", 1, 2, 2)
    assert kv.revision == 2


def test_delete_with_prev_revision() -> None:
    kv = KvStore()
    run(kv, Put("a", b"1"))
    assert run(kv, Delete("a", prev_revision=7)).status is ResultStatus.CONFLICT
    assert kv.get("a") is not None
    assert run(kv, Delete("a", prev_revision=1)).deleted == 1


def test_cas_on_value() -> None:
    kv = KvStore()
    assert run(kv, Cas("a", expected=None, new=b"1")).ok
    r = run(kv, Cas("a", expected=None, new=b"x"))
    assert (r.status, r.prev_revision) == (ResultStatus.CONFLICT, 1)
    assert run(kv, Cas("a", expected=b"nope", new=b"x")).status is ResultStatus.CONFLICT
    r = run(kv, Cas("a", expected=b"1", new=b"2"))
    assert (r.status, r.revision, r.prev_revision) == (ResultStatus.OK, 2, 1)
    assert kv.get("a") == KeyValue("a", b"2", 1, 2, 2)
    # absent != b""
    assert run(kv, Cas("b", expected=b"", new=b"x")).status is ResultStatus.CONFLICT


def test_range_is_sorted_by_utf8_order() -> None:
    kv = KvStore()
    for key in ["b/2", "a", "b/1", "b/\u00e9", "b/\U0001f600", "b/z", "c"]:
        run(kv, Put(key, key.encode()))
    keys = [x.key for x in kv.range("b/")]
    assert keys == ["b/1", "b/2", "b/z", "b/\u00e9", "b/\U0001f600"]
    assert keys == sorted(keys, key=lambda k: k.encode())
    assert len(kv.range()) == 7
    assert kv.range("zz") == []


# --- transactions ---------------------------------------------------------------------


def _cmp(key: str, target: CompareTarget, op: CompareOp, operand: bytes | int) -> Compare:
    return Compare(key, target, op, operand)


V, VER, CRE, MOD = (
    CompareTarget.VALUE,
    CompareTarget.VERSION,
    CompareTarget.CREATE,
    CompareTarget.MOD,
)
EQ, NE, LT, GT = CompareOp.EQ, CompareOp.NE, CompareOp.LT, CompareOp.GT


@pytest.mark.parametrize(
    ("compare", "holds"),
    [
        (_cmp("k", V, EQ, b"m"), True),
        (_cmp("k", V, NE, b"m"), False),
        (_cmp("k", V, LT, b"n"), True),
        (_cmp("k", V, GT, b"a"), True),
        (_cmp("k", V, GT, b"z"), False),
        (_cmp("k", VER, EQ, 2), True),
        (_cmp("k", VER, LT, 2), False),
        (_cmp("k", VER, GT, 1), True),
        (_cmp("k", CRE, EQ, 1), True),
        (_cmp("k", CRE, NE, 1), False),
        (_cmp("k", MOD, EQ, 3), True),
        (_cmp("k", MOD, LT, 3), False),
        (_cmp("k", MOD, GT, 2), True),
        # an absent key: version/create/mod are 0, and value compares are always false (etcd)
        (_cmp("none", VER, EQ, 0), True),
        (_cmp("none", CRE, EQ, 0), True),
        (_cmp("none", MOD, LT, 1), True),
        (_cmp("none", V, EQ, b""), False),
        (_cmp("none", V, NE, b"x"), False),
    ],
)
def test_txn_compare_kinds(compare: Compare, holds: bool) -> None:
    kv = KvStore()
    run(kv, Put("k", b"a"))  # rev 1
    run(kv, Put("other", b"o"))  # rev 2
    run(kv, Put("k", b"m"))  # rev 3: k created 1, mod 3, version 2
    r = run(kv, Txn((compare,), success=(TxnGet("k"),), failure=(TxnGet("other"),)))
    assert r.ok
    assert r.succeeded is holds
    [resp] = r.responses
    assert isinstance(resp, GetResponse)
    assert resp.kvs[0].key == ("k" if holds else "other")


def test_txn_runs_one_branch_with_one_revision() -> None:
    kv = KvStore()
    run(kv, Put("p/a", b"1"))
    run(kv, Put("p/b", b"2"))
    run(kv, Put("q", b"3"))
    txn = Txn(
        compares=(_cmp("q", V, EQ, b"3"), _cmp("q", VER, EQ, 1)),
        success=(
            TxnPut("new", b"n"),
            TxnPut("q", b"4"),
            TxnDelete("p/", prefix=True),
            TxnGet("p/", prefix=True),
            TxnGet("new"),
            TxnDelete("absent"),
        ),
        failure=(TxnPut("failed", b"f"),),
    )
    r = run(kv, txn)
    assert (r.status, r.succeeded, r.revision) == (ResultStatus.OK, True, 4)
    assert r.responses == (
        PutResponse(0),
        PutResponse(3),
        DeleteResponse(2),
        GetResponse(()),
        GetResponse((KeyValue("new", b"n", 4, 4, 1),)),  # reads see earlier writes
        DeleteResponse(0),
    )
    assert kv.get("q") == KeyValue("q", b"4", 3, 4, 2)
    assert kv.get("failed") is None
    assert [e.revision for e in kv.events_since(4)] == [4, 4, 4, 4]
    r = run(kv, txn)  # compares now fail: the failure branch runs
    assert (r.succeeded, r.revision, r.responses) == (False, 5, (PutResponse(0),))
    assert kv.get("failed") is not None


def test_read_only_or_noop_txn_does_not_bump_revision() -> None:
    kv = KvStore()
    run(kv, Put("a", b"1"))
    r = run(kv, Txn(success=(TxnGet("a"), TxnDelete("zzz"), TxnDelete("zz/", prefix=True))))
    assert (r.ok, r.revision, kv.revision) == (True, 1, 1)
    assert run(kv, Txn()).succeeded  # no compares: vacuously true


# --- watch history --------------------------------------------------------------------


def test_events_since_by_revision_and_prefix() -> None:
    kv = KvStore()
    run(kv, Put("a/1", b"x"))
    run(kv, Put("b/1", b"y"))
    run(kv, Put("a/1", b"z"))
    run(kv, Delete("a/1"))
    events = kv.events_since(1, "a/")
    assert [(e.type, e.revision, e.kv.value) for e in events] == [
        (EventType.PUT, 1, b"x"),
        (EventType.PUT, 3, b"z"),
        (EventType.DELETE, 4, b""),
    ]
    assert events[1].prev == KeyValue("a/1", b"x", 1, 1, 1)
    assert events[2] == Event(
        EventType.DELETE, KeyValue("a/1", b"", 0, 4, 0), KeyValue("a/1", b"z", 1, 3, 2)
    )
    assert [e.revision for e in kv.events_since(2)] == [2, 3, 4]
    assert kv.events_since(5) == []  # the future: nothing yet
    with pytest.raises(BadRequest):
        kv.events_since(0)


def test_history_is_bounded_and_reports_compaction() -> None:
    kv = KvStore(KvConfig(history_revisions=3))
    for i in range(6):
        run(kv, Put("k", str(i).encode()))
    assert kv.first_event_revision == 4
    assert [e.revision for e in kv.events_since(4)] == [4, 5, 6]
    with pytest.raises(Compacted, match="revision 3 is compacted") as info:
        kv.events_since(3)
    assert (info.value.revision, info.value.first_revision) == (3, 4)
    assert isinstance(info.value, BadRequest)


def test_history_bounded_by_bytes() -> None:
    kv = KvStore(KvConfig(history_bytes=10_000))
    for _ in range(10):
        run(kv, Put("k", b"x" * 3000))
    assert kv.first_event_revision > 5
    assert kv.events_since(kv.first_event_revision)[-1].revision == 10


def test_long_history_trims_amortized() -> None:
    kv = KvStore(KvConfig(history_revisions=100))
    for i in range(5000):
        run(kv, Put(f"k{i % 7}", b"v"))
    assert kv.first_event_revision == 4901
    assert len(kv.events_since(4901)) == 100
    assert [e.revision for e in kv.events_since(4990, "k")][:2] == [4990, 4991]


def test_apply_out_of_order_is_a_bug_and_raises() -> None:
    kv = KvStore()
    kv.apply_noop(1)
    with pytest.raises(ValueError, match="out of order"):
        kv.apply(3, encode_command(Put("a", b"1")))
    with pytest.raises(ValueError, match="out of order"):
        kv.apply_noop(1)
    assert kv.applied_index == 1
    assert run(kv, Put("a", b"1")).ok
    assert kv.applied_index == 2


def test_load_replaces_the_store_in_place() -> None:
    leader, follower = KvStore(), KvStore()
    for i in range(5):
        run(leader, Put(f"k{i}", b"v"))
    run(follower, Put("stale", b"x"))
    follower.load(leader.snapshot())
    assert follower.snapshot() == leader.snapshot()
    assert follower.get("stale") is None and follower.applied_index == leader.applied_index
    run(follower, Put("k9", b"after"))  # applying goes on from the snapshot's index
    assert follower.get("k9") is not None
    assert follower.first_event_revision == leader.revision + 1  # history starts afresh
