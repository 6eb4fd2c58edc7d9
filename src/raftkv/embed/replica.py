"""Replica: the user's state machine as the driver sees it (raftkv.driver.StateMachine).

It decodes each committed envelope, answers retried commands from the session table, runs the
user's apply, and encodes the result, producing an Outcome identically on every replica. It
also snapshots the user's state together with the session table, so exactly-once survives
log compaction and snapshot installs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import msgspec

from raftkv.core.types import Snapshot
from raftkv.embed.codec import Decoder
from raftkv.embed.machine import AnyMachine
from raftkv.embed.protocol import ENCODER, Outcome, Status, decode_envelope
from raftkv.embed.sessions import SessionRecord, Sessions
from raftkv.errors import BadRequest, CorruptionError

log = logging.getLogger("raftkv.embed")

SNAPSHOT_VERSION = 1


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Decide which retries are still recognised: every replica must use the same values."""

    max_sessions: int = 10_000
    ttl_entries: int = 1_000_000
    max_results: int = 1024  # answers cached per Node (bounds its commands in flight)


class ReplicaSnapshot(msgspec.Struct, frozen=True, array_like=True):
    version: int
    index: int
    sessions: list[SessionRecord]
    machine: bytes


_SNAPSHOT_DECODER = msgspec.msgpack.Decoder(ReplicaSnapshot)


class _ReplicaView:
    def __init__(self, snap: ReplicaSnapshot) -> None:
        self._snap = snap

    def encode(self) -> bytes:
        return ENCODER.encode(self._snap)


class Replica:
    def __init__(
        self, machine: AnyMachine, commands: Decoder[Any], limits: SessionLimits | None = None
    ) -> None:
        limits = limits or SessionLimits()
        self.machine = machine
        self._commands = commands
        self._sessions = Sessions(limits.max_sessions, limits.ttl_entries, limits.max_results)
        self._applied = 0

    # --- the driver's StateMachine protocol --------------------------------------------

    @property
    def applied_index(self) -> int:
        return self._applied

    @property
    def revision(self) -> int:
        return self._applied  # wakes watchers after every applied entry (follower reads)

    def apply_noop(self, index: int) -> None:
        self._advance(index)

    def apply(self, index: int, data: bytes) -> Outcome:
        self._advance(index)
        try:
            env = decode_envelope(data)
        except BadRequest as e:
            return Outcome(Status.BAD_COMMAND, error_type="BadRequest", error=str(e))
        if env.client:
            cached = self._sessions.check(env.client, env.seq, env.ack, index)
            if cached is not None:
                return cached
        outcome = self._run(env.command)
        if env.client:
            self._sessions.record(env.client, env.seq, index, outcome)
        return outcome

    # --- snapshots ----------------------------------------------------------------------

    def snapshot_view(self) -> _ReplicaView:
        """The application's snapshot() runs now, at exactly this index; the rest of the
        encoding may happen later (raftkv.driver.StateMachine)."""
        return _ReplicaView(
            ReplicaSnapshot(
                SNAPSHOT_VERSION, self._applied, self._sessions.records(), self.machine.snapshot()
            )
        )

    def install_snapshot(self, snapshot: Snapshot) -> None:
        self.restore(snapshot.data, snapshot.index)

    def snapshot(self) -> bytes:
        return ENCODER.encode(
            ReplicaSnapshot(
                SNAPSHOT_VERSION, self._applied, self._sessions.records(), self.machine.snapshot()
            )
        )

    def restore(self, data: bytes, index: int) -> None:
        """Replace everything by a snapshot() image taken at index."""
        try:
            snap = _SNAPSHOT_DECODER.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise CorruptionError(f"snapshot at index {index} cannot be decoded: {e}") from None
        if snap.version != SNAPSHOT_VERSION or snap.index != index:
            raise CorruptionError(
                f"snapshot at index {index} has version {snap.version} and index {snap.index}"
            )
        self.machine.restore(snap.machine)
        self._sessions.load(snap.sessions)
        self._applied = index

    # --- internals ----------------------------------------------------------------------

    def _advance(self, index: int) -> None:
        if index != self._applied + 1:
            raise RuntimeError(f"apply of index {index} after {self._applied}: entries skipped")
        self._applied = index
        self._sessions.expire(index)

    def _run(self, data: bytes) -> Outcome:
        try:
            command = self._commands.decode(data)
        except BadRequest as e:
            return Outcome(Status.BAD_COMMAND, error_type="BadRequest", error=str(e))
        try:
            result = self.machine.apply(command)
        except Exception as e:
            log.debug("apply raised %s at index %d", type(e).__name__, self._applied)
            return Outcome(Status.FAILED, error_type=type(e).__name__, error=str(e))
        try:
            encoded = ENCODER.encode(result)
        except (TypeError, msgspec.EncodeError, OverflowError, ValueError) as e:
            return Outcome(
                Status.BAD_RESULT,
                error_type="EncodeError",
                error=f"the result (a {type(result).__name__}) cannot be encoded: {e}",
            )
        return Outcome(Status.OK, encoded)
