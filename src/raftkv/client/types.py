"""What the client returns: small frozen records built from the server's JSON answers. A
key's record is the store's own KeyValue (raftkv.kv.model), decoded from its JSON."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from raftkv.client.errors import ServerError
from raftkv.kv.model import KeyValue


@dataclass(frozen=True, slots=True)
class WriteResult:
    """A committed write: the store revision after it and the log index it was applied at.
    duplicate: the server answered a retry from its session cache (applied once, earlier)."""

    revision: int
    index: int = 0
    duplicate: bool = False
    deleted: int = 0  # for deletes: how many keys were removed


@dataclass(frozen=True, slots=True)
class GetResult:
    key: str
    value: bytes
    revision: int  # the key's mod_revision

    @property
    def text(self) -> str:
        return self.value.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int
    index: int = 0
    responses: tuple[dict[str, Any], ...] = ()
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str  # "put" or "delete"
    key: str
    value: bytes
    revision: int
    prev_value: bytes | None = None
    watch: int = 0  # which watch of the stream: the position of its prefix, from 0
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class MemberStatus:
    id: str
    role: str
    match_index: int | None  # None: unknown to the node asked (followers track no progress)
    reachable: bool


@dataclass(frozen=True, slots=True)
class ServerStatus:
    """GET /v1/status of one node; raw keeps every field the server sent."""

    id: str
    role: str
    term: int
    leader: str | None
    commit_index: int
    applied_index: int
    last_index: int
    members: tuple[MemberStatus, ...]
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, doc: Any) -> ServerStatus:
        if not isinstance(doc, dict):
            raise ServerError(f"malformed status (not a JSON object): {str(doc)[:100]}")
        try:
            members = tuple(
                MemberStatus(
                    str(m["id"]),
                    str(m.get("role", "")),
                    None if m.get("match_index") is None else int(m["match_index"]),
                    bool(m.get("reachable", False)),
                )
                for m in doc.get("members", [])
            )
            leader = doc.get("leader")
            return cls(
                id=str(doc["id"]),
                role=str(doc["role"]),
                term=int(doc["term"]),
                leader=None if leader in (None, "") else str(leader),
                commit_index=int(doc["commit_index"]),
                applied_index=int(doc["applied_index"]),
                last_index=int(doc["last_index"]),
                members=members,
                raw=doc,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ServerError(f"malformed status, missing or bad field: {e}") from None


def decode_value(obj: dict[str, Any], prefix: str = "") -> bytes:
    """The bytes of {"value": text} or {"value_b64": base64} (the server's value encoding)."""
    b64 = obj.get(prefix + "value_b64")
    if isinstance(b64, str):
        try:
            return base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise ServerError(f"malformed base64 value from the server: {b64[:40]!r}") from None
    text = obj.get(prefix + "value", "")
    return str(text).encode("utf-8", "surrogatepass")


def encode_value(value: bytes) -> dict[str, str]:
    """The inverse of decode_value: text when UTF-8, base64 otherwise."""
    try:
        return {"value": value.decode("utf-8")}
    except UnicodeDecodeError:
        return {"value_b64": base64.b64encode(value).decode("ascii")}


def key_value(obj: Any) -> KeyValue:
    if not isinstance(obj, dict):
        raise ServerError(f"malformed key-value from the server: {str(obj)[:100]}")
    return KeyValue(
        key=str(obj.get("key", "")),
        value=decode_value(obj),
        create_revision=int(obj.get("create_revision", 0)),
        mod_revision=int(obj.get("mod_revision", 0)),
        version=int(obj.get("version", 0)),
    )
