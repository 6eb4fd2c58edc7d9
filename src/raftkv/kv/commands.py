"""Commands: what a client asks the state machine to do, encoded explicitly into a log entry.

Entry data layout: one format byte followed by a msgpack `[command, session]`.
Every replica decodes the same bytes with the same code, so a command is either valid everywhere
or refused everywhere. Never pickle: log entries outlive the code that wrote them.

Formats: 2 (COMMAND_FORMAT, written now): a session must have been opened by an OpenSession
entry. 1 (LEGACY_COMMAND_FORMAT, read only): written before sessions were opened through the
log; an unknown session with ack <= 1 opened itself. Both decode to the same structs; the store
applies each with its own rule, so a log written by an older version replays unchanged.
"""

from __future__ import annotations

import enum

import msgspec

from raftkv.errors import BadRequest, TooLarge
from raftkv.kv.limits import (
    MAX_CLIENT_ID_SIZE,
    MAX_COMMAND_SIZE,
    MAX_SESSION_SEQ,
    MAX_TXN_OPS,
    key_size,
    validate_key,
    validate_prefix,
    validate_revision,
    validate_value,
)
from raftkv.kv.sessions import validate_nonce

COMMAND_FORMAT = 2
"""Leading byte of every KV log entry; bump it (and keep decoding the old one) on any change."""
LEGACY_COMMAND_FORMAT = 1
"""Entries written before sessions were opened through the log (see the module docstring)."""


class _Cmd(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True, tag=True):
    pass


class Session(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """Client session for exactly-once writes (Raft dissertation 6.3; kv/sessions.py).

    client_id: as assigned when an OpenSession entry applied. seq >= 1 numbers the client's
    commands; a retry reuses its seq. ack, when > 0, promises the client holds a response for
    every seq < ack, so the store may forget those results.
    """

    client_id: str
    seq: int
    ack: int = 0


class Put(_Cmd, frozen=True, tag="put"):
    """Set key to value. prev_revision: None = unconditional, 0 = key must not exist,
    R > 0 = the key's mod_revision must be R (compare-and-set on revision)."""

    key: str
    value: bytes
    prev_revision: int | None = None


class Delete(_Cmd, frozen=True, tag="delete"):
    """Delete key (absent is not an error). prev_revision as for Put."""

    key: str
    prev_revision: int | None = None


class Cas(_Cmd, frozen=True, tag="cas"):
    """Set key to new if its value is expected (None: only if the key is absent)."""

    key: str
    expected: bytes | None
    new: bytes


class CompareTarget(enum.Enum):
    VALUE = "value"
    VERSION = "version"
    CREATE = "create"  # create_revision
    MOD = "mod"  # mod_revision


class CompareOp(enum.Enum):
    EQ = "="
    NE = "!="
    LT = "<"
    GT = ">"


class Compare(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """key's target op operand. operand is bytes for VALUE and an int otherwise.

    An absent key has version, create and mod 0; a VALUE compare on an absent key is false (etcd).
    """

    key: str
    target: CompareTarget
    op: CompareOp
    operand: bytes | int


class TxnPut(_Cmd, frozen=True, tag="put"):
    key: str
    value: bytes


class TxnDelete(_Cmd, frozen=True, tag="delete"):
    """Delete key, or every key starting with key when prefix is set."""

    key: str
    prefix: bool = False


class TxnGet(_Cmd, frozen=True, tag="get"):
    """Read key, or every key starting with key when prefix is set (sees earlier ops' writes)."""

    key: str
    prefix: bool = False


TxnOp = TxnPut | TxnDelete | TxnGet


class Txn(_Cmd, frozen=True, tag="txn"):
    """If every compare holds, run success, else failure; all writes share one new revision."""

    compares: tuple[Compare, ...] = ()
    success: tuple[TxnOp, ...] = ()
    failure: tuple[TxnOp, ...] = ()


class OpenSession(_Cmd, frozen=True, tag="open_session"):
    """Open a client session; its id is session_id(entry index, nonce). Carries no session."""

    nonce: str


Command = Put | Delete | Cas | Txn
KvEntry = Command | OpenSession  # what a KV log entry holds


class _Envelope(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    command: KvEntry
    session: Session | None = None


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Envelope)


# --- validation -----------------------------------------------------------------------


def validate_session(session: Session) -> None:
    size = key_size(session.client_id)
    if not 0 < size <= MAX_CLIENT_ID_SIZE:
        raise BadRequest(f"client_id must be 1..{MAX_CLIENT_ID_SIZE} bytes, got {size}")
    if not 1 <= session.seq <= MAX_SESSION_SEQ:
        raise BadRequest(f"session seq must be in 1..{MAX_SESSION_SEQ}, got {session.seq}")
    if not 0 <= session.ack <= MAX_SESSION_SEQ:
        raise BadRequest(f"session ack must be in 0..{MAX_SESSION_SEQ}, got {session.ack}")


def _validate_compare(c: Compare) -> None:
    validate_key(c.key)
    match c.target, c.operand:
        case CompareTarget.VALUE, bytes():
            validate_value(c.operand)
        case CompareTarget.VALUE, _:
            raise BadRequest(f"compare on value of {c.key!r} needs a bytes operand")
        case _, bytes():
            raise BadRequest(f"compare on {c.target.value} of {c.key!r} needs an int operand")


def _validate_ops(ops: tuple[TxnOp, ...], branch: str) -> None:
    if len(ops) > MAX_TXN_OPS:
        raise TooLarge(f"txn {branch} has {len(ops)} ops, the limit is {MAX_TXN_OPS}")
    puts: set[str] = set()
    deleted_keys: set[str] = set()
    deleted_prefixes: list[str] = []
    for op in ops:
        match op:
            case TxnPut(key=key, value=value):
                validate_key(key)
                validate_value(value)
                if key in puts:
                    raise BadRequest(f"txn {branch} puts {key!r} twice")
                puts.add(key)
            case TxnDelete(key=key, prefix=True):
                validate_prefix(key)
                deleted_prefixes.append(key)
            case TxnDelete(key=key):
                validate_key(key)
                deleted_keys.add(key)
            case TxnGet(key=key, prefix=True):
                validate_prefix(key)
            case TxnGet(key=key):
                validate_key(key)
    # Invariant (as etcd): a txn branch writes each key at most once.
    for key in puts:
        if key in deleted_keys or any(key.startswith(p) for p in deleted_prefixes):
            raise BadRequest(f"txn {branch} both puts and deletes {key!r}")


def validate_command(command: KvEntry) -> None:
    """Raise BadRequest or TooLarge unless command is valid; pure, the same on every replica."""
    match command:
        case OpenSession(nonce=nonce):
            validate_nonce(nonce)
        case Put(key=key, value=value, prev_revision=prev):
            validate_key(key)
            validate_value(value)
            validate_revision(prev, "prev_revision")
        case Delete(key=key, prev_revision=prev):
            validate_key(key)
            validate_revision(prev, "prev_revision")
        case Cas(key=key, expected=expected, new=new):
            validate_key(key)
            validate_value(new)
            if expected is not None:
                validate_value(expected)
        case Txn(compares=compares, success=success, failure=failure):
            if len(compares) > MAX_TXN_OPS:
                raise TooLarge(f"txn has {len(compares)} compares, the limit is {MAX_TXN_OPS}")
            for c in compares:
                _validate_compare(c)
            _validate_ops(success, "success")
            _validate_ops(failure, "failure")


# --- encoding -------------------------------------------------------------------------


def encode_command(command: KvEntry, session: Session | None = None) -> bytes:
    """Validate and encode a command (the data of a NORMAL log entry)."""
    _validate_entry(command, session)
    buf = bytearray(b"\x00")
    buf[0] = COMMAND_FORMAT
    _encoder.encode_into(_Envelope(command, session), buf, 1)
    if len(buf) > MAX_COMMAND_SIZE:
        raise TooLarge(f"command is {len(buf)} bytes, the limit is {MAX_COMMAND_SIZE}")
    return bytes(buf)


def decode_command(data: bytes) -> tuple[KvEntry, Session | None]:
    """Decode and validate entry data. Raises BadRequest (TooLarge) only, whatever the bytes."""
    if len(data) > MAX_COMMAND_SIZE:
        raise TooLarge(f"command is {len(data)} bytes, the limit is {MAX_COMMAND_SIZE}")
    if not data:
        raise BadRequest("empty command")
    if data[0] not in (COMMAND_FORMAT, LEGACY_COMMAND_FORMAT):
        raise BadRequest(f"unknown command format {data[0]} (this node reads {COMMAND_FORMAT})")
    try:
        envelope = _decoder.decode(memoryview(data)[1:])
    except (msgspec.DecodeError, ValueError) as e:  # ValueError: invalid UTF-8 in a str
        raise BadRequest(f"undecodable command: {e}") from None
    if data[0] == LEGACY_COMMAND_FORMAT and isinstance(envelope.command, OpenSession):
        raise BadRequest("open_session is not a format 1 command")
    _validate_entry(envelope.command, envelope.session)
    return envelope.command, envelope.session


def is_legacy(data: bytes) -> bool:
    """Whether entry data was written in LEGACY_COMMAND_FORMAT (before opened sessions)."""
    return data[:1] == bytes([LEGACY_COMMAND_FORMAT])


def _validate_entry(command: KvEntry, session: Session | None) -> None:
    validate_command(command)
    if session is not None:
        if isinstance(command, OpenSession):
            raise BadRequest("open_session carries no session")
        validate_session(session)
