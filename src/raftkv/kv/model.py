"""The store's data model: a key's current value with its revisions, and change events."""

from __future__ import annotations

import enum

import msgspec


class KeyValue(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """A key's current state, etcd-style.

    Invariants: 1 <= create_revision <= mod_revision <= store revision; version >= 1 counts the
    puts since the key was (re)created, and a delete resets it (a later put starts again at 1).
    """

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int


class EventType(enum.Enum):
    PUT = "put"
    DELETE = "delete"


class Event(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True, gc=False):
    """One change to one key at `revision`. A transaction's changes all share its revision.

    kv is the key after the change (for a delete: the key with an empty value, versions 0);
    prev is the key before it, None if it did not exist.
    """

    type: EventType
    kv: KeyValue
    prev: KeyValue | None = None

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


def tombstone(key: str, revision: int) -> KeyValue:
    """How a deleted key appears in its DELETE event (etcd's convention)."""
    return KeyValue(key=key, value=b"", create_revision=0, mod_revision=revision, version=0)
