"""Size limits on keys, values and commands, and the validators the HTTP layer maps to 400/413.

The same checks run again inside `KvStore.apply`, so a command that slipped past the HTTP layer
is refused identically on every replica instead of being applied on some.
"""

from __future__ import annotations

from raftkv.errors import BadRequest, TooLarge

MAX_KEY_SIZE = 4 * 1024
"""Largest key, in UTF-8 bytes."""

MAX_VALUE_SIZE = 1024 * 1024
"""Largest value, in bytes."""

MAX_COMMAND_SIZE = 2 * 1024 * 1024
"""Largest encoded command (one log entry's data): one max value plus generous overhead."""

MAX_TXN_OPS = 128
"""Most compares, and most operations per branch, in one transaction (etcd's default)."""

MAX_CLIENT_ID_SIZE = 256
# Session sequence numbers and acks travel as msgpack integers: at most a signed 64-bit one.
MAX_SESSION_SEQ = 2**63 - 1
"""Longest client session id, in UTF-8 bytes."""


def key_size(key: str) -> int:
    """UTF-8 length of key; BadRequest when it cannot be encoded (lone surrogates)."""
    try:
        return len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise BadRequest("key is not valid UTF-8") from None


def validate_key(key: str) -> int:
    """key's UTF-8 size; BadRequest for an empty or unencodable key, TooLarge for one over
    MAX_KEY_SIZE."""
    size = key_size(key)
    if size == 0:
        raise BadRequest("key must not be empty")
    if size > MAX_KEY_SIZE:
        raise TooLarge(f"key is {size} bytes, the limit is {MAX_KEY_SIZE}")
    return size


def validate_prefix(prefix: str) -> None:
    """A prefix may be empty (everything) but is otherwise held to the key limits."""
    size = key_size(prefix)
    if size > MAX_KEY_SIZE:
        raise TooLarge(f"prefix is {size} bytes, the limit is {MAX_KEY_SIZE}")


def validate_value(value: bytes) -> None:
    """Raise TooLarge for a value over MAX_VALUE_SIZE."""
    if len(value) > MAX_VALUE_SIZE:
        raise TooLarge(f"value is {len(value)} bytes, the limit is {MAX_VALUE_SIZE}")


def validate_revision(revision: int | None, what: str) -> None:
    """Revisions in preconditions are None (no check) or >= 0 (0: the key must not exist)."""
    if revision is not None and revision < 0:
        raise BadRequest(f"{what} must be >= 0, got {revision}")
