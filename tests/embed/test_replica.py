"""The Replica (what the Ready loop applies to) and its session table: no network, no disk."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from raftkv.embed.codec import Decoder, encode
from raftkv.embed.errors import EncodeError
from raftkv.embed.protocol import ApplyStatus, Outcome, encode_envelope, encode_open_session
from raftkv.embed.replica import Replica
from raftkv.errors import CorruptionError
from raftkv.kv.sessions import SessionLimits, session_id


class Tally:
    """A plain StateMachine (no base class): commands are ["add", n] or ["fail"]."""

    def __init__(self) -> None:
        self.total = 0
        self.applied: list[int] = []

    def apply(self, command: list[Any]) -> Any:
        match command:
            case ["add", int(n)]:
                self.total += n
                self.applied.append(n)
                return self.total
            case ["fail"]:
                self.total += 1000  # changed before raising: stays changed
                raise ValueError("asked to fail")
            case ["object"]:
                return object()
        raise ValueError(f"unknown command {command!r}")

    def snapshot(self) -> bytes:
        return msgspec.msgpack.encode([self.total, self.applied])

    def restore(self, data: bytes) -> None:
        self.total, self.applied = msgspec.msgpack.decode(data)


C1 = session_id(1, "c1")  # the session every replica() has opened at index 1


def replica(limits: SessionLimits | None = None) -> tuple[Replica, Tally]:
    """A Replica whose entry 1 opened the session C1."""
    tally = Tally()
    r = Replica(tally, Decoder(Any, "the command"), limits)
    assert result(r.apply(1, encode_open_session("c1"))) == C1
    return r, tally


def env(command: object, client: str = C1, seq: int = 1, ack: int = 1) -> bytes:
    return encode_envelope(client, seq, ack, encode(command, "cmd"))


def legacy_env(command: object, client: str, seq: int = 1, ack: int = 1) -> bytes:
    """An entry as the previous version wrote it: [1, client, seq, ack, command]."""
    return msgspec.msgpack.encode([1, client, seq, ack, encode(command, "cmd")])


def result(outcome: Outcome) -> Any:
    assert outcome.status is ApplyStatus.OK, outcome
    return msgspec.msgpack.decode(outcome.result)


def test_applies_in_order_and_returns_encoded_results() -> None:
    r, tally = replica()
    assert result(r.apply(2, env(["add", 2], seq=1))) == 2
    r.apply_noop(3)
    assert result(r.apply(4, env(["add", 5], seq=2))) == 7
    assert r.applied_index == r.revision == 4
    assert tally.applied == [2, 5]


def test_skipping_an_index_is_a_bug_not_silence() -> None:
    r, _ = replica()
    with pytest.raises(RuntimeError, match="skipped"):
        r.apply(3, env(["add", 1]))


def test_a_retried_command_is_applied_once() -> None:
    r, tally = replica()
    first = r.apply(2, env(["add", 1], seq=1))
    again = r.apply(3, env(["add", 1], seq=1))  # the same (client, seq): a retry
    assert result(first) == result(again) == 1
    assert again.duplicate and not first.duplicate
    assert tally.applied == [1]
    # another client's seq 1 is a different command
    c2 = result(r.apply(4, encode_open_session("c2")))
    assert result(r.apply(5, env(["add", 1], client=c2, seq=1))) == 2


def test_acknowledged_answers_are_dropped_and_old_seqs_refused() -> None:
    r, tally = replica()
    r.apply(2, env(["add", 1], seq=1))
    r.apply(3, env(["add", 1], seq=2, ack=2))  # the client has seq 1's answer
    late = r.apply(4, env(["add", 1], seq=1, ack=2))
    assert late.status is ApplyStatus.SESSION_EXPIRED
    assert tally.applied == [1, 1]


def test_sessions_expire_by_log_index_identically() -> None:
    limits = SessionLimits(ttl_entries=3)
    a, _ = replica(limits)
    b, _ = replica(limits)
    for r in (a, b):
        r.apply(2, env(["add", 1], seq=1))
        for i in range(3, 8):
            r.apply_noop(i)
        forgotten = r.apply(8, env(["add", 1], seq=2, ack=2))
        assert forgotten.status is ApplyStatus.SESSION_EXPIRED
    assert a.snapshot() == b.snapshot()


def test_failures_are_outcomes_not_exceptions() -> None:
    r, tally = replica()
    failed = r.apply(2, env(["fail"]))
    assert failed.status is ApplyStatus.FAILED and failed.error_type == "ValueError"
    assert tally.total == 1000  # not rolled back
    assert r.apply(3, b"garbage").status is ApplyStatus.BAD_COMMAND
    bad_result = r.apply(4, env(["object"], seq=2))
    assert bad_result.status is ApplyStatus.BAD_RESULT
    # a failure is cached too: its retry does not apply again
    assert r.apply(5, env(["fail"])).duplicate
    assert tally.total == 1000


def test_snapshot_restores_state_and_sessions() -> None:
    r, _ = replica()
    r.apply(2, env(["add", 3], seq=1))
    r.apply(3, env(["add", 4], seq=2))
    image = r.snapshot()
    r2, tally2 = replica()
    r2.restore(image, 3)
    assert (tally2.total, r2.applied_index) == (7, 3)
    retry = r2.apply(4, env(["add", 4], seq=2))  # answered from the restored session
    assert retry.duplicate and result(retry) == 7
    with pytest.raises(CorruptionError):
        r2.restore(image, 6)  # taken at another index
    with pytest.raises(CorruptionError):
        r2.restore(b"\x00junk", 3)


def test_a_command_of_an_unknown_session_is_refused_not_applied() -> None:
    r, tally = replica(SessionLimits(max_sessions=1))
    for client in ("made-up", session_id(9, "c1")):
        refused = r.apply(r.applied_index + 1, env(["add", 1], client=client))
        assert refused.status is ApplyStatus.SESSION_EXPIRED and "not applied" in refused.error
    r.apply(r.applied_index + 1, encode_open_session("c2"))  # over the cap: C1 goes
    evicted = r.apply(r.applied_index + 1, env(["add", 1]))
    assert evicted.status is ApplyStatus.SESSION_EXPIRED
    assert tally.applied == []


def test_old_entries_replay_with_the_implicit_open_rule() -> None:
    """A log written by the previous version: a Node's first command opened its session."""
    r, tally = replica()
    first = r.apply(2, legacy_env(["add", 1], "old-node"))
    again = r.apply(3, legacy_env(["add", 1], "old-node"))
    forgotten = r.apply(4, legacy_env(["add", 1], "gone", seq=5, ack=5))
    assert (result(first), again.duplicate, forgotten.status) == (
        1,
        True,
        ApplyStatus.SESSION_EXPIRED,
    )
    assert tally.applied == [1]


def test_a_snapshot_of_the_previous_version_restores() -> None:
    """Version 1 snapshots keep their layout: [1, index, sessions, machine]."""
    outcome = [0, msgspec.msgpack.encode(5), "", "", False]
    sessions = [["old-node", 2, 0, [[1, outcome]]]]
    image = msgspec.msgpack.encode([1, 2, sessions, msgspec.msgpack.encode([5, [5]])])
    r, tally = replica()
    r.restore(image, 2)
    retry = r.apply(3, legacy_env(["add", 5], "old-node"))
    assert retry.duplicate and result(retry) == 5 and tally.applied == [5]


def test_unencodable_values_fail_clearly() -> None:
    with pytest.raises(EncodeError, match="cannot encode the command \\(a object\\)"):
        encode(object(), "the command")
