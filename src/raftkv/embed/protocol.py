"""What the embedding layer writes into the Raft log and sends between nodes (msgpack).

Log entry:  [2, client, seq, ack, command]   Envelope: command = the encoded user command;
                                             (client, seq) name it for exactly-once (client ""
                                             = no session); the session must be open.
            [3, nonce]                       OpenSessionEntry: opens the session
                                             session_id(index, nonce) (kv/sessions.py).
            [1, client, seq, ack, command]   LegacyEnvelope, read only: written before sessions
                                             were opened through the log (an unknown client
                                             opened its session implicitly); replayed as then.
Per entry:  Outcome(status, result | error)  built on every replica, identically; an
                                             OpenSessionEntry's result is the session id (msgpack).
Forwarded:  an Envelope or an OpenSessionEntry, proposed at the leader (runtime/forward.py);
            the leader answers the entry's Outcome.
"""

from __future__ import annotations

import enum

import msgspec

from raftkv.errors import BadRequest
from raftkv.kv.sessions import validate_nonce

MAX_COMMAND_SIZE = 4 * 1024 * 1024  # an encoded command (runtime/forward.py takes a bit more)


class _Entry(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """The first element of an entry (its msgspec tag) says which kind it is."""


class LegacyEnvelope(_Entry, frozen=True, tag=1):
    client: str
    seq: int
    ack: int
    command: bytes


class Envelope(_Entry, frozen=True, tag=2):
    client: str
    seq: int
    ack: int  # the client has every answer for seq < ack (their cached results may go)
    command: bytes


class OpenSessionEntry(_Entry, frozen=True, tag=3):
    nonce: str


EmbedEntry = Envelope | OpenSessionEntry | LegacyEnvelope


class ApplyStatus(enum.IntEnum):
    OK = 0
    FAILED = 1  # the state machine raised while applying (state changes before it stay)
    BAD_COMMAND = 2  # the entry or command could not be decoded: nothing was applied
    BAD_RESULT = 3  # applied, but the result could not be encoded
    SESSION_EXPIRED = 4  # unknown session (not applied), or it forgot this seq's answer


class Outcome(msgspec.Struct, frozen=True, array_like=True):
    status: ApplyStatus
    result: bytes = b""
    error_type: str = ""
    error: str = ""
    duplicate: bool = False  # answered from the session cache (a retried command)


_ENTRY_DECODER: msgspec.msgpack.Decoder[EmbedEntry] = msgspec.msgpack.Decoder(EmbedEntry)
ENCODER = msgspec.msgpack.Encoder()


def encode_envelope(client: str, seq: int, ack: int, command: bytes) -> bytes:
    return ENCODER.encode(Envelope(client, seq, ack, command))


def encode_open_session(nonce: str) -> bytes:
    validate_nonce(nonce)
    return ENCODER.encode(OpenSessionEntry(nonce))


def decode_entry(data: bytes) -> EmbedEntry:
    """BadRequest for anything that is not an entry of a known kind."""
    try:
        entry = _ENTRY_DECODER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise BadRequest(f"log entry is not an embedded command: {e}") from None
    if isinstance(entry, OpenSessionEntry):
        validate_nonce(entry.nonce)
    return entry
