"""Replica: the user's state machine as the driver sees it (raftkv.driver.MachinePort).

It decodes each committed entry, opens sessions, answers retried commands from the session
table (the KV store's, kv/sessions.py) and refuses those of unknown sessions, runs the user's
apply, and encodes the result, producing an Outcome identically on every replica. It also
snapshots the user's state together with the session table, so exactly-once survives log
compaction and snapshot installs.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from raftkv.core.types import Snapshot
from raftkv.embed.codec import Decoder
from raftkv.embed.machine import AnyMachine
from raftkv.embed.protocol import (
    ENCODER,
    ApplyStatus,
    Envelope,
    LegacyEnvelope,
    OpenSessionEntry,
    Outcome,
    decode_entry,
)
from raftkv.errors import BadRequest, CorruptionError
from raftkv.kv.sessions import Cached, Refused, SessionLimits, SessionRecord, SessionTable

log = logging.getLogger("raftkv.embed")

# The session records' layout has not changed since version 1 (kv/sessions.py SessionRecord).
SNAPSHOT_VERSION = 1


class ReplicaSnapshot(msgspec.Struct, frozen=True, array_like=True):
    version: int
    index: int
    sessions: tuple[SessionRecord[Outcome], ...]
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
        self._sessions: SessionTable[Outcome] = SessionTable(limits)
        self._applied = 0

    # --- the driver's MachinePort protocol ----------------------------------------------

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
            entry = decode_entry(data)
        except BadRequest as e:
            return Outcome(ApplyStatus.BAD_COMMAND, error_type="BadRequest", error=str(e))
        match entry:
            case OpenSessionEntry(nonce=nonce):
                return Outcome(ApplyStatus.OK, ENCODER.encode(self._sessions.open(index, nonce)))
            case Envelope(client="") | LegacyEnvelope(client=""):
                return self._run(entry.command)
        legacy = isinstance(entry, LegacyEnvelope)
        match self._sessions.check(entry.client, entry.seq, entry.ack, index, implicit_open=legacy):
            case Cached(result=cached):
                return msgspec.structs.replace(cached, duplicate=True)
            case Refused(why=why):
                return Outcome(ApplyStatus.SESSION_EXPIRED, error_type="SessionExpired", error=why)
        outcome = self._run(entry.command)
        self._sessions.record(entry.client, entry.seq, index, outcome)
        return outcome

    # --- snapshots ----------------------------------------------------------------------

    def snapshot_view(self) -> _ReplicaView:
        """The application's snapshot() runs now, at exactly this index; the rest of the
        encoding may happen later (raftkv.driver.MachinePort)."""
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
            return Outcome(ApplyStatus.BAD_COMMAND, error_type="BadRequest", error=str(e))
        try:
            result = self.machine.apply(command)
        except Exception as e:
            log.debug("apply raised %s at index %d", type(e).__name__, self._applied)
            return Outcome(ApplyStatus.FAILED, error_type=type(e).__name__, error=str(e))
        try:
            encoded = ENCODER.encode(result)
        except (TypeError, msgspec.EncodeError, OverflowError, ValueError) as e:
            return Outcome(
                ApplyStatus.BAD_RESULT,
                error_type="EncodeError",
                error=f"the result (a {type(result).__name__}) cannot be encoded: {e}",
            )
        return Outcome(ApplyStatus.OK, encoded)
