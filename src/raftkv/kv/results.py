"""What applying a command returns. Results are Structs because sessions cache them in snapshots."""

from __future__ import annotations

import enum

import msgspec

from raftkv.kv.model import KeyValue


class ResultStatus(enum.Enum):
    """Outcome of one applied entry. Anything but OK changed nothing."""

    OK = "ok"
    CONFLICT = "conflict"  # a precondition (prev_revision, cas expected) did not hold: HTTP 409
    INVALID = "invalid"  # undecodable or invalid command: HTTP 400
    TOO_LARGE = "too_large"  # a key, value or command over its limit: HTTP 413
    SESSION_EXPIRED = "session_expired"  # unknown session, or this seq's result forgotten: HTTP 410


class _Resp(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True, tag=True):
    pass


class PutResponse(_Resp, frozen=True, tag="put"):
    prev_revision: int  # the key's mod_revision before the put, 0 if it was absent


class DeleteResponse(_Resp, frozen=True, tag="delete"):
    deleted: int


class GetResponse(_Resp, frozen=True, tag="get"):
    kvs: tuple[KeyValue, ...]  # sorted by key


OpResponse = PutResponse | DeleteResponse | GetResponse


class Result(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """The answer to one command.

    revision: the store's revision once the command was applied (for a put, the key's new
    mod_revision). prev_revision: put/delete/cas, the key's mod_revision before the command;
    on CONFLICT, the key's mod_revision now (0: absent). succeeded: for a txn, whether the
    compares held (which branch ran). duplicate: a retried session seq answered from the
    session cache; the command was applied only once, when first seen. client_id: the
    session an OpenSession command opened.
    """

    status: ResultStatus
    revision: int
    prev_revision: int = 0
    deleted: int = 0
    succeeded: bool = True
    responses: tuple[OpResponse, ...] = ()
    error: str = ""
    duplicate: bool = False
    client_id: str = ""  # last: snapshots of format 1 cached results without it

    @property
    def ok(self) -> bool:
        return self.status is ResultStatus.OK
