"""Command encoding, validation limits, and malformed entries giving deterministic error results."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv.errors import BadRequest, TooLarge
from raftkv.kv import (
    COMMAND_FORMAT,
    MAX_COMMAND_SIZE,
    MAX_KEY_SIZE,
    MAX_TXN_OPS,
    MAX_VALUE_SIZE,
    Cas,
    Command,
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    KvStore,
    Put,
    Result,
    ResultStatus,
    Session,
    Txn,
    TxnDelete,
    TxnGet,
    TxnPut,
    decode_command,
    encode_command,
    validate_key,
    validate_value,
)

COMMANDS: list[Command] = [
    Put("k", b"\x00\xff"),
    Put("k", b"v", prev_revision=0),
    Put("k", b"v", prev_revision=9),
    Delete("k"),
    Delete("k", prev_revision=3),
    Cas("k", None, b"n"),
    Cas("k", b"e", b"n"),
    Txn(),
    Txn(
        compares=(
            Compare("a", CompareTarget.VALUE, CompareOp.LT, b"z"),
            Compare("a", CompareTarget.MOD, CompareOp.NE, 3),
        ),
        success=(TxnPut("a", b"1"), TxnDelete("p/", prefix=True), TxnGet("q", prefix=True)),
        failure=(TxnGet("a"), TxnDelete("b")),
    ),
]


@pytest.mark.parametrize("command", COMMANDS, ids=repr)
@pytest.mark.parametrize("session", [None, Session("c1", 4), Session("c\u00e9", 4, ack=3)])
def test_commands_round_trip(command: Command, session: Session | None) -> None:
    data = encode_command(command, session)
    assert data[0] == COMMAND_FORMAT
    assert decode_command(data) == (command, session)


def test_limits_validators() -> None:
    validate_key("k" * MAX_KEY_SIZE)
    validate_value(b"v" * MAX_VALUE_SIZE)
    with pytest.raises(TooLarge):
        validate_key("k" * (MAX_KEY_SIZE + 1))
    with pytest.raises(TooLarge):
        validate_key("\u00e9" * (MAX_KEY_SIZE // 2 + 1))  # limit is in UTF-8 bytes
    with pytest.raises(TooLarge):
        validate_value(b"v" * (MAX_VALUE_SIZE + 1))
    with pytest.raises(BadRequest, match="empty"):
        validate_key("")
    with pytest.raises(BadRequest, match="UTF-8"):
        validate_key("\ud800")
    assert issubclass(TooLarge, BadRequest)


@pytest.mark.parametrize(
    ("command", "error", "match"),
    [
        (Put("", b"v"), BadRequest, "empty"),
        (Put("k" * (MAX_KEY_SIZE + 1), b"v"), TooLarge, "key is"),
        (Put("k", b"v" * (MAX_VALUE_SIZE + 1)), TooLarge, "value is"),
        (Put("k", b"v", prev_revision=-1), BadRequest, "prev_revision"),
        (Delete("k", prev_revision=-2), BadRequest, "prev_revision"),
        (Cas("k", b"v" * (MAX_VALUE_SIZE + 1), b""), TooLarge, "value is"),
        (Txn(compares=(Compare("k", CompareTarget.VALUE, CompareOp.EQ, 1),)), BadRequest, "bytes"),
        (Txn(compares=(Compare("k", CompareTarget.MOD, CompareOp.EQ, b"1"),)), BadRequest, "int"),
        (Txn(success=(TxnGet(""),)), BadRequest, "empty"),
        (Txn(success=(TxnPut("a", b""), TxnPut("a", b""))), BadRequest, "twice"),
        (Txn(failure=(TxnPut("a/b", b""), TxnDelete("a/", prefix=True))), BadRequest, "both"),
        (Txn(success=(TxnDelete("a"), TxnPut("a", b""))), BadRequest, "both"),
        (Txn(success=(TxnGet("a"),) * (MAX_TXN_OPS + 1)), TooLarge, "ops"),
        (
            Txn(compares=(Compare("a", CompareTarget.VERSION, CompareOp.EQ, 0),) * 129),
            TooLarge,
            "compares",
        ),
    ],
)
def test_invalid_commands_are_refused(
    command: Command, error: type[BadRequest], match: str
) -> None:
    with pytest.raises(error, match=match):
        encode_command(command)


def test_prefix_ops_may_use_an_empty_prefix() -> None:
    encode_command(Txn(success=(TxnGet("", prefix=True), TxnDelete("", prefix=True))))


@pytest.mark.parametrize("session", [Session("", 1), Session("c", 0), Session("c", 1, ack=-1)])
def test_invalid_sessions_are_refused(session: Session) -> None:
    with pytest.raises(BadRequest):
        encode_command(Put("k", b"v"), session)


def test_encoded_command_size_is_limited() -> None:
    big = Txn(success=tuple(TxnPut(f"k{i}", b"v" * MAX_VALUE_SIZE) for i in range(3)))
    with pytest.raises(TooLarge, match="command is"):
        encode_command(big)


def _raw(obj: object) -> bytes:
    return bytes([COMMAND_FORMAT]) + msgspec.msgpack.encode(obj)


@pytest.mark.parametrize(
    ("data", "status", "match"),
    [
        (b"", ResultStatus.INVALID, "empty command"),
        (b"\x03junk", ResultStatus.INVALID, "unknown command format 3"),
        (b"\x80\x04\x95", ResultStatus.INVALID, "unknown command format"),  # a pickle
        (_raw(None), ResultStatus.INVALID, "undecodable"),
        (_raw([["nope", "k"], None]), ResultStatus.INVALID, "undecodable"),
        (_raw([["put", "k", "not-bytes"], None]), ResultStatus.INVALID, "undecodable"),
        (_raw([["put", "k", b"v", None, "extra"], None]), ResultStatus.INVALID, "undecodable"),
        (_raw([["put", "k", b"v"], ["c", 1], "extra"]), ResultStatus.INVALID, "undecodable"),
        (_raw([["put", "", b"v"], None]), ResultStatus.INVALID, "empty"),
        (_raw([["put", "k", b"v"], ["c", 0]]), ResultStatus.INVALID, "seq"),
        (_raw([["put", "k", b"v" * (MAX_VALUE_SIZE + 1)], None]), ResultStatus.TOO_LARGE, "value"),
        (b"\x01" + b"\x00" * MAX_COMMAND_SIZE, ResultStatus.TOO_LARGE, "command is"),
        (_raw([["put", b"\xff", b"v"], None]), ResultStatus.INVALID, "undecodable"),  # key not str
        (
            bytes([COMMAND_FORMAT]) + b"\x92\x93\xa3put\xa1\xff\xc4\x00\xc0",
            ResultStatus.INVALID,
            "utf-8",
        ),
    ],
)
def test_malformed_entries_give_error_results_deterministically(
    data: bytes, status: ResultStatus, match: str
) -> None:
    results: list[Result] = []
    for _ in range(2):  # two replicas
        kv = KvStore()
        kv.apply(1, encode_command(Put("before", b"1")))
        results.append(kv.apply(2, data))
        assert (kv.applied_index, kv.revision, len(kv)) == (2, 1, 1)  # nothing changed
        assert kv.apply(3, encode_command(Put("after", b"2"))).ok  # and the loop goes on
    assert results[0] == results[1]
    assert results[0].status is status
    assert match in results[0].error
    assert results[0].revision == 1


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_random_bytes_never_raise(data: bytes) -> None:
    kv = KvStore()
    result = kv.apply(1, data)
    assert kv.applied_index == 1
    assert result == KvStore().apply(1, data)


@settings(max_examples=300)
@given(st.sampled_from(COMMANDS), st.data())
def test_mutated_entries_never_raise(command: Command, data: st.DataObject) -> None:
    raw = bytearray(encode_command(command, Session("c", 1)))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] = data.draw(st.integers(0, 255))
    result = KvStore().apply(1, bytes(raw))
    assert result == KvStore().apply(1, bytes(raw))
