"""Client sessions: opened through the log, a retried command applies once, an unknown or
expired session is refused (never applied), and expiry is a pure function of the log.

The table (kv/sessions.py) is tested on its own, then through the KV store, which also keeps
the rule of entries written before sessions were opened through the log (format 1)."""

from __future__ import annotations

import msgspec
import pytest

from raftkv.errors import BadRequest
from raftkv.kv import (
    COMMAND_FORMAT,
    Command,
    KeyValue,
    KvConfig,
    KvStore,
    Put,
    Result,
    ResultStatus,
    Session,
    encode_command,
)
from raftkv.kv.commands import LEGACY_COMMAND_FORMAT, OpenSession, decode_command
from raftkv.kv.sessions import (
    Cached,
    Refused,
    SessionLimits,
    SessionRecord,
    SessionTable,
    session_id,
)

# --- the table on its own -------------------------------------------------------------


def table(**limits: int) -> SessionTable[str]:
    return SessionTable(SessionLimits(**limits))


def test_opening_a_session_names_it_by_its_entry() -> None:
    t = table()
    t.expire(7)
    cid = t.open(7, "abc")
    assert cid == session_id(7, "abc") == "7-abc"
    assert cid in t and len(t) == 1


def test_unknown_client_is_refused_and_nothing_is_recorded() -> None:
    t = table()
    verdict = t.check("7-abc", 1, 0, 8)
    assert isinstance(verdict, Refused) and "unknown" in verdict.why
    assert "not applied" in verdict.why
    assert len(t) == 0


def test_duplicate_detection_answers_the_first_result() -> None:
    t = table()
    cid = t.open(1, "n")
    assert t.check(cid, 1, 1, 2) is None  # new: apply it
    t.record(cid, 1, 2, "first")
    assert t.check(cid, 1, 1, 3) == Cached("first")  # the retry
    assert t.check(cid, 2, 1, 4) is None  # the next seq is new
    other = t.open(5, "m")
    assert t.check(other, 1, 1, 6) is None  # another session's seq 1 is another command


def test_ack_forgets_answers_and_refuses_older_seqs() -> None:
    t = table()
    cid = t.open(1, "n")
    t.record(cid, 1, 2, "r1")
    assert t.check(cid, 2, 2, 3) is None  # the client has seq 1's answer
    t.record(cid, 2, 3, "r2")
    late = t.check(cid, 1, 2, 4)
    assert isinstance(late, Refused) and "may or may not" in late.why


def test_answers_per_session_are_capped() -> None:
    t = table(max_results=2)
    cid = t.open(1, "n")
    for seq in (1, 2, 3):
        t.record(cid, seq, 1 + seq, f"r{seq}")
    assert isinstance(t.check(cid, 1, 0, 5), Refused)  # the oldest answer went
    assert t.check(cid, 2, 0, 6) == Cached("r2")
    assert t.check(cid, 3, 0, 7) == Cached("r3")


def test_expiry_by_ttl_counts_entries_since_last_use() -> None:
    t = table(ttl_entries=3)
    cid = t.open(1, "n")
    for index in (2, 3, 4):
        t.expire(index)
    assert cid in t  # last used at 1: kept through index 4 (3 entries after)
    t.check(cid, 1, 0, 4)  # a use at 4 renews it
    for index in (5, 6, 7):
        t.expire(index)
    assert cid in t
    t.expire(8)  # more than 3 entries after its last use at 4
    assert cid not in t
    assert isinstance(t.check(cid, 2, 0, 8), Refused)


def test_expiry_by_cap_forgets_the_least_recently_used() -> None:
    t = table(max_sessions=2)
    a, b = t.open(1, "a"), t.open(2, "b")
    t.check(a, 1, 0, 3)  # a used after b: b is now the least recently used
    c = t.open(4, "c")
    assert (a in t, b in t, c in t) == (True, False, True)
    assert isinstance(t.check(b, 1, 0, 5), Refused)


def test_snapshot_records_round_trip_in_eviction_order() -> None:
    t = table(max_sessions=2)
    a, b = t.open(1, "a"), t.open(2, "b")
    t.record(a, 1, 3, "ra")  # a is now the most recently used
    records = t.records()
    data = msgspec.msgpack.encode(records)
    back = msgspec.msgpack.decode(data, type=tuple[SessionRecord[str], ...])
    u = table(max_sessions=2)
    u.load(back)
    assert u.records() == records
    assert u.check(a, 1, 0, 4) == Cached("ra")
    u.open(5, "c")  # evicts b, the least recently used, on the copy as on the original
    t.check(a, 1, 0, 4)
    t.open(5, "c")
    assert b not in u and u.records() == t.records()


def test_the_same_log_gives_every_replica_the_same_table() -> None:
    limits = SessionLimits(max_sessions=3, ttl_entries=5, max_results=2)
    replicas = [SessionTable[int](limits) for _ in range(3)]
    for t in replicas:  # the same entries, in the same order
        ids = []
        for index in range(1, 60):
            t.expire(index)
            if index % 7 == 1:
                ids.append(t.open(index, f"n{index}"))
            elif ids:
                cid = ids[index % len(ids)]
                if t.check(cid, index % 4 + 1, index % 3, index) is None:
                    t.record(cid, index % 4 + 1, index, index)
    assert replicas[0].records() == replicas[1].records() == replicas[2].records()
    assert 0 < len(replicas[0]) <= 3


def test_implicit_open_is_the_rule_of_old_entries_only() -> None:
    t = table()
    assert t.check("c", 1, 1, 1, implicit_open=True) is None  # old rule: a new client
    t.record("c", 1, 1, "r")
    assert t.check("c", 1, 1, 2, implicit_open=True) == Cached("r")
    assert isinstance(t.check("d", 2, 2, 3, implicit_open=True), Refused)  # it had answers
    assert isinstance(t.check("e", 1, 0, 4), Refused)  # the new rule


# --- through the KV store ---------------------------------------------------------------


def run(store: KvStore, command: Command, session: Session | None = None) -> Result:
    return store.apply(store.applied_index + 1, encode_command(command, session))


def open_session(store: KvStore, nonce: str = "n0") -> str:
    result = store.apply(store.applied_index + 1, encode_command(OpenSession(nonce)))
    assert result.ok and result.client_id == session_id(store.applied_index, nonce)
    return result.client_id


def test_retried_put_applies_once_and_a_newer_seq_applies() -> None:
    kv = KvStore()
    c1 = open_session(kv)
    first = run(kv, Put("a", b"1"), Session(c1, 1))
    assert (first.ok, first.duplicate, kv.revision) == (True, False, 1)
    run(kv, Put("a", b"other"))  # someone else writes in between (no session)
    retry = run(kv, Put("a", b"1"), Session(c1, 1))
    assert retry.duplicate
    # the original answer
    assert (retry.status, retry.revision) == (ResultStatus.OK, first.revision)
    assert kv.revision == 2  # not applied again
    assert kv.get("a") == KeyValue("a", b"other", 1, 2, 2)
    newer = run(kv, Put("a", b"2"), Session(c1, 2))
    assert (newer.ok, newer.duplicate, newer.revision) == (True, False, 3)


def test_a_write_of_an_unknown_session_is_refused_not_applied() -> None:
    kv = KvStore()
    for client in ("a", "1-guess", session_id(1, "n0")):  # made up, or not opened yet
        r = run(kv, Put("k", b"v"), Session(client, 1, 0))
        assert r.status is ResultStatus.SESSION_EXPIRED and "not applied" in r.error
    assert (kv.revision, kv.get("k")) == (0, None)


def test_opening_a_session_changes_no_data() -> None:
    kv = KvStore()
    run(kv, Put("a", b"1"))
    cid = open_session(kv, "xyz")
    assert cid == "2-xyz" and kv.revision == 1


def test_failed_results_are_cached_too() -> None:
    kv = KvStore()
    c = open_session(kv)
    run(kv, Put("a", b"1"))
    r = run(kv, Put("a", b"x", prev_revision=0), Session(c, 1))
    assert r.status is ResultStatus.CONFLICT
    run(kv, Put("b", b"1"))
    again = run(kv, Put("a", b"x", prev_revision=0), Session(c, 1))
    assert (again.status, again.duplicate, again.revision) == (ResultStatus.CONFLICT, True, 1)


def test_pipelined_seqs_out_of_order_each_apply_once() -> None:
    kv = KvStore()
    c = open_session(kv)
    for seq in [2, 1, 3, 2, 1]:
        run(kv, Put(f"k{seq}", b"v"), Session(c, seq))
    assert kv.revision == 3


def test_the_evicted_sessions_retry_is_refused_not_applied_again() -> None:
    """Issue #15 item 1 in the state machine: a writes, more clients than the cap open
    sessions and write once each, a's retry must not apply again."""
    kv = KvStore(KvConfig(sessions=SessionLimits(max_sessions=100)))
    a = open_session(kv, "a")
    first = run(kv, Put("k", b"from a"), Session(a, 1, 0))
    for i in range(101):
        run(kv, Put(f"other/{i}", b"x"), Session(open_session(kv, f"o{i}"), 1, 0))
    retry = run(kv, Put("k", b"from a"), Session(a, 1, 0))
    assert retry.status is ResultStatus.SESSION_EXPIRED
    got = kv.get("k")
    assert got is not None and got.mod_revision == first.revision


def test_sessions_expire_after_ttl_entries() -> None:
    kv = KvStore(KvConfig(sessions=SessionLimits(ttl_entries=3)))
    c = open_session(kv)  # index 1
    run(kv, Put("a", b"1"), Session(c, 1))  # index 2
    kv.apply_noop(3)
    kv.apply_noop(4)
    assert run(kv, Put("a", b"1"), Session(c, 1)).duplicate  # index 5: 3 since last use
    for i in (6, 7, 8):
        kv.apply_noop(i)
    r = run(kv, Put("a", b"1"), Session(c, 1))  # index 9: forgotten, refused
    assert r.status is ResultStatus.SESSION_EXPIRED
    assert kv.revision == 1


def test_invalid_command_with_a_session_is_not_cached() -> None:
    kv = KvStore()
    c = open_session(kv)
    bad = bytes([COMMAND_FORMAT]) + msgspec.msgpack.encode([["put", "", b"v"], [c, 1, 0]])
    assert kv.apply(2, bad).status is ResultStatus.INVALID
    r = run(kv, Put("a", b"1"), Session(c, 1))
    assert (r.ok, r.duplicate, kv.revision) == (True, False, 1)


def test_session_numbers_beyond_64_bits_are_the_callers_error() -> None:
    for session in (Session("c", 2**63, 0), Session("c", 1, 2**63), Session("c", 0, 0)):
        with pytest.raises(BadRequest, match="session"):
            encode_command(Put("k", b"v"), session)
    encode_command(Put("k", b"v"), Session("c", 2**63 - 1, 2**63 - 1))  # the largest is fine


@pytest.mark.parametrize("nonce", ["", "x" * 65, "a-b", "caf\u00e9"])
def test_bad_nonces_are_refused(nonce: str) -> None:
    with pytest.raises(BadRequest, match="nonce"):
        encode_command(OpenSession(nonce))


def test_open_session_carries_no_session() -> None:
    with pytest.raises(BadRequest, match="no session"):
        encode_command(OpenSession("n"), Session("c", 1))


# --- entries written before sessions were opened through the log ---------------------


def legacy(command: Command | OpenSession, session: Session | None = None) -> bytes:
    """Entry data as the previous version wrote it (format 1, same msgpack layout)."""
    return bytes([LEGACY_COMMAND_FORMAT]) + encode_command(command, session)[1:]


def test_old_entries_replay_with_the_rule_they_were_written_under() -> None:
    """A log from before: a client's first write opened its session, a retry was answered
    from it. Replaying it gives the answers (and revisions) that were acknowledged then."""
    kv = KvStore()
    first = kv.apply(1, legacy(Put("a", b"1"), Session("c-old", 1, 1)))
    retry = kv.apply(2, legacy(Put("a", b"1"), Session("c-old", 1, 1)))
    second = kv.apply(3, legacy(Put("a", b"2"), Session("c-old", 2, 2)))
    assert (first.ok, first.revision, retry.duplicate, second.revision) == (True, 1, True, 2)
    # The session they opened lives on for new entries too (it is in the table).
    assert run(kv, Put("a", b"2"), Session("c-old", 2, 2)).duplicate
    # A forgotten client with answers was refused then too.
    assert kv.apply(5, legacy(Put("b", b"x"), Session("c-gone", 3, 3))).status is (
        ResultStatus.SESSION_EXPIRED
    )
    assert kv.revision == 2


def test_open_session_in_an_old_entry_is_invalid() -> None:
    with pytest.raises(BadRequest, match="format 1"):
        decode_command(legacy(OpenSession("n")))
    assert KvStore().apply(1, legacy(OpenSession("n"))).status is ResultStatus.INVALID
