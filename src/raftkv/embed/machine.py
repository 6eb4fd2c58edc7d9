"""The StateMachine protocol: what an application hands to a Node to be replicated."""

from __future__ import annotations

from typing import Any, Protocol, TypeVar, runtime_checkable

_C_contra = TypeVar("_C_contra", contravariant=True)
_R_co = TypeVar("_R_co", covariant=True)


@runtime_checkable
class StateMachine(Protocol[_C_contra, _R_co]):
    """A deterministic state machine. Every replica applies the same commands in the same
    order, so apply must depend only on the current state and the command: no clock, no
    randomness, no IO, no iteration over unordered sets whose order could differ.

    apply(command) -> result   runs once per committed command on every replica; the result
                               goes back to the caller (msgspec-encoded). An exception is
                               reported to the caller as CommandFailed (raise only for reasons
                               that hold on every replica: it is not a rollback).
    snapshot() -> bytes        the whole state, for log compaction and for catching up a
                               replica that fell behind.
    restore(data)              replace the whole state by a snapshot() image.
    """

    def apply(self, command: _C_contra) -> _R_co: ...

    def snapshot(self) -> bytes: ...

    def restore(self, data: bytes) -> None: ...


AnyMachine = StateMachine[Any, Any]
