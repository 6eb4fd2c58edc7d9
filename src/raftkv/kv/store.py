"""KvStore: the replicated key-value state machine. Pure and deterministic.

Every replica applies the same committed entries in the same order, so `apply` must depend only
on the store's state and the entry: no clock, no randomness, no dict-order leaks (ranges sort).
A malformed entry yields an error Result, never an exception: it is malformed on every replica.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

import msgspec

from raftkv.core.types import Snapshot
from raftkv.errors import BadRequest, TooLarge
from raftkv.kv.commands import (
    Cas,
    Command,
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    OpenSession,
    Put,
    Txn,
    TxnDelete,
    TxnGet,
    TxnOp,
    TxnPut,
    decode_command,
    is_legacy,
)
from raftkv.kv.history import EventHistory
from raftkv.kv.model import Event, EventType, KeyValue, tombstone
from raftkv.kv.results import (
    DeleteResponse,
    GetResponse,
    OpResponse,
    PutResponse,
    Result,
    ResultStatus,
)
from raftkv.kv.sessions import Cached, Refused, SessionLimits, SessionTable
from raftkv.kv.snapshot import SnapshotState, SnapshotView, decode_snapshot, encode_snapshot

_Ordered = TypeVar("_Ordered", bytes, int)


@dataclass(frozen=True, slots=True)
class KvConfig:
    """Tunables. The session ones decide results, so every replica must use the same values."""

    # 16 cached results per session: a client's pipelined writes (kv/sessions.py)
    sessions: SessionLimits = field(default_factory=lambda: SessionLimits(max_results=16))
    history_revisions: int = 10_000  # watch history, local to this replica
    history_bytes: int = 64 * 1024 * 1024


class KvStore:
    def __init__(self, config: KvConfig | None = None) -> None:
        self._config = config = config or KvConfig()
        self._data: dict[str, KeyValue] = {}
        self._revision = 0  # invariant: increases by exactly 1 per command that changes data
        self._applied_index = 0  # invariant: entries 1..applied_index applied, in order
        self._sessions: SessionTable[Result] = SessionTable(config.sessions)
        self._history = EventHistory(config.history_revisions, config.history_bytes)
        self._pending: list[Event] = []  # events of the command being applied

    # --- reads ------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def applied_index(self) -> int:
        return self._applied_index

    @property
    def config(self) -> KvConfig:
        return self._config

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str) -> KeyValue | None:
        return self._data.get(key)

    def range(self, prefix: str = "") -> list[KeyValue]:
        """Every key starting with prefix, sorted by key (UTF-8 byte order)."""
        return sorted(
            (kv for key, kv in self._data.items() if key.startswith(prefix)),
            key=lambda kv: kv.key,
        )

    def events_since(self, revision: int, prefix: str = "") -> list[Event]:
        """Events at revisions >= revision on keys under prefix; Compacted if too old."""
        return self._history.since(revision, prefix)

    @property
    def first_event_revision(self) -> int:
        """The oldest revision events_since can still serve."""
        return self._history.first_revision

    # --- applying ---------------------------------------------------------------------

    def apply_noop(self, index: int) -> None:
        """Account for a committed entry that is not a KV command (leader noop, config)."""
        self._advance(index)

    def apply(self, index: int, data: bytes) -> Result:
        """Apply the committed entry at index. Raises only if index is not applied_index + 1."""
        self._advance(index)
        try:
            command, session = decode_command(data)
        except TooLarge as e:
            return Result(ResultStatus.TOO_LARGE, self._revision, error=str(e))
        except BadRequest as e:
            return Result(ResultStatus.INVALID, self._revision, error=str(e))
        if isinstance(command, OpenSession):
            client_id = self._sessions.open(index, command.nonce)
            return Result(ResultStatus.OK, self._revision, client_id=client_id)
        if session is None:
            return self._execute(command)
        cid, seq = session.client_id, session.seq
        match self._sessions.check(cid, seq, session.ack, index, implicit_open=is_legacy(data)):
            case Cached(result=cached):
                return msgspec.structs.replace(cached, duplicate=True)
            case Refused(why=why):
                return Result(ResultStatus.SESSION_EXPIRED, self._revision, error=why)
        result = self._execute(command)
        self._sessions.record(cid, seq, index, result)
        return result

    def _advance(self, index: int) -> None:
        if index != self._applied_index + 1:
            raise ValueError(f"apply out of order: index {index} after {self._applied_index}")
        self._applied_index = index
        self._sessions.expire(index)

    def _execute(self, command: Command) -> Result:
        match command:
            case Put(key=key, value=value, prev_revision=prev):
                current = self._data.get(key)
                if not _precondition(current, prev):
                    return self._conflict(key, current, f"mod_revision is not {prev}")
                self._put(key, value)
                return self._commit(prev_revision=_mod(current))
            case Delete(key=key, prev_revision=prev):
                current = self._data.get(key)
                if not _precondition(current, prev):
                    return self._conflict(key, current, f"mod_revision is not {prev}")
                deleted = self._delete(key)
                return self._commit(prev_revision=_mod(current), deleted=deleted)
            case Cas(key=key, expected=expected, new=new):
                current = self._data.get(key)
                if (current.value if current else None) != expected:
                    return self._conflict(key, current, "value is not the expected one")
                self._put(key, new)
                return self._commit(prev_revision=_mod(current))
            case Txn(compares=compares, success=success, failure=failure):
                succeeded = all(self._compare(c) for c in compares)
                ops = success if succeeded else failure
                responses = tuple(self._op(op) for op in ops)
                return self._commit(succeeded=succeeded, responses=responses)

    def _conflict(self, key: str, current: KeyValue | None, why: str) -> Result:
        return Result(
            ResultStatus.CONFLICT,
            self._revision,
            prev_revision=_mod(current),
            error=f"precondition failed on {key!r}: {why}",
        )

    def _commit(
        self,
        *,
        prev_revision: int = 0,
        deleted: int = 0,
        succeeded: bool = True,
        responses: tuple[OpResponse, ...] = (),
    ) -> Result:
        """Close the command: one new revision if anything changed, and its events."""
        if self._pending:
            self._revision += 1
            self._history.append(self._revision, tuple(self._pending))
            self._pending.clear()
        return Result(
            ResultStatus.OK,
            self._revision,
            prev_revision=prev_revision,
            deleted=deleted,
            succeeded=succeeded,
            responses=responses,
        )

    def _put(self, key: str, value: bytes) -> None:
        revision = self._revision + 1  # the revision _commit will assign
        prev = self._data.get(key)
        if prev is None:
            kv = KeyValue(key, value, revision, revision, 1)
        else:
            kv = KeyValue(key, value, prev.create_revision, revision, prev.version + 1)
        self._data[key] = kv
        self._pending.append(Event(EventType.PUT, kv, prev))

    def _delete(self, key: str) -> int:
        prev = self._data.pop(key, None)
        if prev is None:
            return 0
        self._pending.append(Event(EventType.DELETE, tombstone(key, self._revision + 1), prev))
        return 1

    def _compare(self, c: Compare) -> bool:
        kv = self._data.get(c.key)
        match c.target, c.operand:
            case CompareTarget.VALUE, bytes() as operand:
                return kv is not None and _holds(c.op, _order(kv.value, operand))
            case CompareTarget.VERSION, int() as operand:
                return _holds(c.op, _order(kv.version if kv else 0, operand))
            case CompareTarget.CREATE, int() as operand:
                return _holds(c.op, _order(kv.create_revision if kv else 0, operand))
            case CompareTarget.MOD, int() as operand:
                return _holds(c.op, _order(_mod(kv), operand))
        raise AssertionError("unreachable: validate_command checks operand types")

    def _op(self, op: TxnOp) -> OpResponse:
        match op:
            case TxnPut(key=key, value=value):
                prev = _mod(self._data.get(key))
                self._put(key, value)
                return PutResponse(prev)
            case TxnDelete(key=key, prefix=True):
                return DeleteResponse(sum(self._delete(kv.key) for kv in self.range(key)))
            case TxnDelete(key=key):
                return DeleteResponse(self._delete(key))
            case TxnGet(key=key, prefix=True):
                return GetResponse(tuple(self.range(key)))
            case TxnGet(key=key):
                kv = self._data.get(key)
                return GetResponse(() if kv is None else (kv,))

    # --- snapshots --------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The whole replicated state (data, revision, applied index, sessions) as bytes.

        The watch history is not included: it is local to a replica.
        """
        return encode_snapshot(
            SnapshotState(
                revision=self._revision,
                applied_index=self._applied_index,
                kvs=tuple(self.range()),
                sessions=self._sessions.records(),
            )
        )

    def snapshot_view(self) -> SnapshotView:
        """The state as of now, cheaply: its encode() gives what snapshot() would have."""
        return SnapshotView(
            self._revision, self._applied_index, self._data, self._sessions.records()
        )

    def install_snapshot(self, snapshot: Snapshot) -> None:
        """Become the store in the leader's snapshot (raftkv.driver.MachinePort)."""
        self.load(snapshot.data)

    @classmethod
    def restore(cls, data: bytes, config: KvConfig | None = None) -> KvStore:
        """A store equal to the one that produced data. ProtocolError if data is not one."""
        state = decode_snapshot(data)
        store = cls(config)
        store._data = {kv.key: kv for kv in state.kvs}
        store._revision = state.revision
        store._applied_index = state.applied_index
        store._sessions.load(state.sessions)
        cfg = store._config
        store._history = EventHistory(
            cfg.history_revisions, cfg.history_bytes, first_revision=state.revision + 1
        )
        return store

    def load(self, data: bytes) -> None:
        """Become the store that produced data, in place (a snapshot installed from the
        leader). The watch history restarts after the snapshot's revision."""
        other = KvStore.restore(data, self._config)
        self._data = other._data
        self._revision = other._revision
        self._applied_index = other._applied_index
        self._sessions = other._sessions
        self._history = other._history
        self._pending = []


def _mod(kv: KeyValue | None) -> int:
    return 0 if kv is None else kv.mod_revision


def _precondition(current: KeyValue | None, prev_revision: int | None) -> bool:
    """None: no check; 0: the key must be absent; R: the key's mod_revision must be R."""
    if prev_revision is None:
        return True
    return _mod(current) == prev_revision


def _order(a: _Ordered, b: _Ordered) -> int:
    """-1, 0 or 1 as a <, == or > b."""
    return (a > b) - (a < b)


def _holds(op: CompareOp, order: int) -> bool:
    match op:
        case CompareOp.EQ:
            return order == 0
        case CompareOp.NE:
            return order != 0
        case CompareOp.LT:
            return order < 0
        case CompareOp.GT:
            return order > 0
