"""Errors of the embedding API, placed in raftkv's one error tree (raftkv.errors)."""

from __future__ import annotations

from raftkv.errors import BadRequest, CallerError


class EncodeError(BadRequest):
    """A command, argument or result cannot be encoded with msgspec (msgpack). Raised before
    anything is proposed, so nothing was applied."""


class CommandFailed(CallerError):
    """The command was committed and applied, but the state machine raised while applying it
    (on every replica alike), or its result could not be encoded. Whatever the state machine
    changed before raising stays changed.

    error_type: the exception's class name; index: the log index the command was applied at.
    """

    def __init__(self, message: str, *, error_type: str, index: int) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.index = index


class NotAttached(CallerError):
    """A @replicated or @query method was called on an object no running Node replicates,
    or from inside apply (where it would wait for itself)."""
