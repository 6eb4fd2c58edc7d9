"""Client sessions: a retried command applies exactly once; sessions expire by log index only."""

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
    Session,
    Status,
    encode_command,
)


def run(store: KvStore, command: Command, session: Session | None = None) -> Result:
    return store.apply(store.applied_index + 1, encode_command(command, session))


def test_retried_put_applies_once_and_a_newer_seq_applies() -> None:
    kv = KvStore()
    first = run(kv, Put("a", b"1"), Session("c1", 1))
    assert (first.ok, first.duplicate, kv.revision) == (True, False, 1)
    run(kv, Put("a", b"other"))  # someone else writes in between
    retry = run(kv, Put("a", b"1"), Session("c1", 1))
    assert retry.duplicate
    assert (retry.status, retry.revision) == (Status.OK, first.revision)  # the original answer
    assert kv.revision == 2  # not applied again
    assert kv.get("a") == KeyValue("a", b"other", 1, 2, 2)
    newer = run(kv, Put("a", b"2"), Session("c1", 2))
    assert (newer.ok, newer.duplicate, newer.revision) == (True, False, 3)


def test_failed_results_are_cached_too() -> None:
    kv = KvStore()
    run(kv, Put("a", b"1"))
    r = run(kv, Put("a", b"x", prev_revision=0), Session("c", 1))
    assert r.status is Status.CONFLICT
    run(kv, Put("b", b"1"))
    again = run(kv, Put("a", b"x", prev_revision=0), Session("c", 1))
    assert (again.status, again.duplicate, again.revision) == (Status.CONFLICT, True, 1)


def test_sessions_are_per_client() -> None:
    kv = KvStore()
    run(kv, Put("a", b"1"), Session("c1", 1))
    assert not run(kv, Put("a", b"2"), Session("c2", 1)).duplicate
    assert kv.revision == 2


def test_pipelined_seqs_out_of_order_each_apply_once() -> None:
    kv = KvStore()
    for seq in [2, 1, 3, 2, 1]:
        run(kv, Put(f"k{seq}", b"v"), Session("c", seq))
    assert kv.revision == 3


def test_ack_forgets_answered_results() -> None:
    kv = KvStore()
    run(kv, Put("a", b"1"), Session("c", 1, ack=1))
    run(kv, Put("a", b"2"), Session("c", 2, ack=2))  # the client has seq 1's answer
    r = run(kv, Put("a", b"1"), Session("c", 1, ack=2))
    assert r.status is Status.SESSION_EXPIRED
    assert "may or may not have been applied" in r.error
    assert kv.revision == 2


def test_results_per_session_are_bounded() -> None:
    kv = KvStore(KvConfig(max_session_results=2))
    for seq in (1, 2, 3):
        run(kv, Put("a", str(seq).encode()), Session("c", seq))
    assert run(kv, Put("a", b"1"), Session("c", 1)).status is Status.SESSION_EXPIRED
    assert run(kv, Put("a", b"2"), Session("c", 2)).duplicate
    assert kv.revision == 3


def test_sessions_expire_after_ttl_entries() -> None:
    kv = KvStore(KvConfig(session_ttl_entries=3))
    run(kv, Put("a", b"1"), Session("c", 1))  # index 1
    kv.apply_noop(2)
    kv.apply_noop(3)
    assert run(kv, Put("a", b"1"), Session("c", 1)).duplicate  # index 4: 3 since last use
    kv.apply_noop(5)
    kv.apply_noop(6)
    kv.apply_noop(7)  # index 8 is more than 3 entries after its last use at 4: forgotten
    assert not run(kv, Put("a", b"1"), Session("c", 1)).duplicate  # no ack: looks new
    assert kv.revision == 2
    for i in range(9, 12):
        kv.apply_noop(i)
    r = run(kv, Put("a", b"1"), Session("c", 2, ack=2))  # with ack: we know we forgot it
    assert r.status is Status.SESSION_EXPIRED
    assert kv.revision == 2


def test_least_recently_used_sessions_are_evicted_over_the_cap() -> None:
    kv = KvStore(KvConfig(max_sessions=2))
    run(kv, Put("a", b"1"), Session("c1", 1))
    run(kv, Put("a", b"2"), Session("c2", 1))
    run(kv, Put("a", b"1"), Session("c1", 1))  # dedupe touches c1: c2 is now the oldest
    run(kv, Put("a", b"3"), Session("c3", 1))
    assert run(kv, Put("a", b"1"), Session("c1", 1)).duplicate
    assert run(kv, Put("a", b"3"), Session("c3", 1)).duplicate
    assert not run(kv, Put("a", b"2"), Session("c2", 1)).duplicate  # forgotten
    assert kv.revision == 4


def test_invalid_command_with_a_session_is_not_cached() -> None:
    kv = KvStore()
    bad = bytes([COMMAND_FORMAT]) + msgspec.msgpack.encode([["put", "", b"v"], ["c", 1, 0]])
    assert kv.apply(1, bad).status is Status.INVALID
    r = run(kv, Put("a", b"1"), Session("c", 1))
    assert (r.ok, r.duplicate, kv.revision) == (True, False, 1)


def test_session_numbers_beyond_64_bits_are_the_callers_error() -> None:
    for session in (Session("c", 2**63, 0), Session("c", 1, 2**63), Session("c", 0, 0)):
        with pytest.raises(BadRequest, match="session"):
            encode_command(Put("k", b"v"), session)
    encode_command(Put("k", b"v"), Session("c", 2**63 - 1, 2**63 - 1))  # the largest is fine
