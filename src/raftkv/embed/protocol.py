"""What the embedding layer writes into the Raft log and sends between nodes (msgpack).

Log entry:  Envelope(version, client, seq, ack, command)   command = the encoded user command;
            (client, seq) name it for exactly-once (client "" = no session).
Per entry:  Outcome(status, result | error)                 built on every replica, identically.
Forwarded:  ForwardReply(code, index, outcome, leader, message)   leader -> follower.
"""

from __future__ import annotations

import enum

import msgspec

from raftkv.errors import BadRequest

ENVELOPE_VERSION = 1


class Envelope(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    version: int
    client: str
    seq: int
    ack: int  # the client has every answer for seq < ack (their cached results may go)
    command: bytes


class Status(enum.IntEnum):
    OK = 0
    FAILED = 1  # the state machine raised while applying (state changes before it stay)
    BAD_COMMAND = 2  # the entry or command could not be decoded: nothing was applied
    BAD_RESULT = 3  # applied, but the result could not be encoded
    SESSION_EXPIRED = 4  # the session forgot this seq: it may or may not have been applied


class Outcome(msgspec.Struct, frozen=True, array_like=True):
    status: Status
    result: bytes = b""
    error_type: str = ""
    error: str = ""
    duplicate: bool = False  # answered from the session cache (a retried command)


class ForwardReply(msgspec.Struct, frozen=True, array_like=True):
    code: str  # ok | not_leader | dropped | no_quorum | timeout | stopped | bad_request
    index: int = 0
    outcome: Outcome | None = None
    leader: str | None = None
    message: str = ""


_ENVELOPE_DECODER = msgspec.msgpack.Decoder(Envelope)
_REPLY_DECODER = msgspec.msgpack.Decoder(ForwardReply)
ENCODER = msgspec.msgpack.Encoder()


def encode_envelope(client: str, seq: int, ack: int, command: bytes) -> bytes:
    return ENCODER.encode(Envelope(ENVELOPE_VERSION, client, seq, ack, command))


def decode_envelope(data: bytes) -> Envelope:
    """BadRequest for anything that is not a current-version envelope."""
    try:
        env = _ENVELOPE_DECODER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise BadRequest(f"log entry is not an embedded command: {e}") from None
    if env.version != ENVELOPE_VERSION:
        raise BadRequest(f"log entry has envelope version {env.version}, not {ENVELOPE_VERSION}")
    return env


def decode_reply(data: bytes) -> ForwardReply:
    try:
        return _REPLY_DECODER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise BadRequest(f"malformed reply from the leader: {e}") from None
