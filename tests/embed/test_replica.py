"""The Replica (what the Ready loop applies to) and its session table: no network, no disk."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from raftkv.embed.codec import Decoder, encode
from raftkv.embed.errors import EncodeError
from raftkv.embed.protocol import Outcome, Status, encode_envelope
from raftkv.embed.replica import Replica, SessionLimits
from raftkv.errors import CorruptionError


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


def replica(limits: SessionLimits | None = None) -> tuple[Replica, Tally]:
    tally = Tally()
    return Replica(tally, Decoder(Any, "the command"), limits), tally


def env(command: object, client: str = "c1", seq: int = 1, ack: int = 1) -> bytes:
    return encode_envelope(client, seq, ack, encode(command, "cmd"))


def result(outcome: Outcome) -> Any:
    assert outcome.status is Status.OK, outcome
    return msgspec.msgpack.decode(outcome.result)


def test_applies_in_order_and_returns_encoded_results() -> None:
    r, tally = replica()
    assert result(r.apply(1, env(["add", 2], seq=1))) == 2
    r.apply_noop(2)
    assert result(r.apply(3, env(["add", 5], seq=2))) == 7
    assert r.applied_index == r.revision == 3
    assert tally.applied == [2, 5]


def test_skipping_an_index_is_a_bug_not_silence() -> None:
    r, _ = replica()
    with pytest.raises(RuntimeError, match="skipped"):
        r.apply(2, env(["add", 1]))


def test_a_retried_command_is_applied_once() -> None:
    r, tally = replica()
    first = r.apply(1, env(["add", 1], seq=1))
    again = r.apply(2, env(["add", 1], seq=1))  # the same (client, seq): a retry
    assert result(first) == result(again) == 1
    assert again.duplicate and not first.duplicate
    assert tally.applied == [1]
    # another client's seq 1 is a different command
    assert result(r.apply(3, env(["add", 1], client="c2", seq=1))) == 2


def test_acknowledged_answers_are_dropped_and_old_seqs_refused() -> None:
    r, tally = replica()
    r.apply(1, env(["add", 1], seq=1))
    r.apply(2, env(["add", 1], seq=2, ack=2))  # the client has seq 1's answer
    late = r.apply(3, env(["add", 1], seq=1, ack=2))
    assert late.status is Status.SESSION_EXPIRED
    assert tally.applied == [1, 1]


def test_sessions_expire_by_log_index_identically() -> None:
    limits = SessionLimits(ttl_entries=3)
    a, _ = replica(limits)
    b, _ = replica(limits)
    for r in (a, b):
        r.apply(1, env(["add", 1], seq=1))
        for i in range(2, 7):
            r.apply_noop(i)
        forgotten = r.apply(7, env(["add", 1], seq=2, ack=2))
        assert forgotten.status is Status.SESSION_EXPIRED
    assert a.snapshot() == b.snapshot()


def test_failures_are_outcomes_not_exceptions() -> None:
    r, tally = replica()
    failed = r.apply(1, env(["fail"]))
    assert failed.status is Status.FAILED and failed.error_type == "ValueError"
    assert tally.total == 1000  # not rolled back
    assert r.apply(2, b"garbage").status is Status.BAD_COMMAND
    bad_result = r.apply(3, env(["object"], seq=2))
    assert bad_result.status is Status.BAD_RESULT
    # a failure is cached too: its retry does not apply again
    assert r.apply(4, env(["fail"])).duplicate
    assert tally.total == 1000


def test_snapshot_restores_state_and_sessions() -> None:
    r, _ = replica()
    r.apply(1, env(["add", 3], seq=1))
    r.apply(2, env(["add", 4], seq=2))
    image = r.snapshot()
    r2, tally2 = replica()
    r2.restore(image, 2)
    assert (tally2.total, r2.applied_index) == (7, 2)
    retry = r2.apply(3, env(["add", 4], seq=2))  # answered from the restored session
    assert retry.duplicate and result(retry) == 7
    with pytest.raises(CorruptionError):
        r2.restore(image, 5)  # taken at another index
    with pytest.raises(CorruptionError):
        r2.restore(b"\x00junk", 2)


def test_unencodable_values_fail_clearly() -> None:
    with pytest.raises(EncodeError, match="cannot encode the command \\(a object\\)"):
        encode(object(), "the command")
