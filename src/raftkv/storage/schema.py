"""Payloads of the records (msgspec msgpack, arrays not maps; never pickle).

FORMAT_VERSION is written into every segment header and snapshot file; a reader refuses any
other version rather than guessing.
"""

from __future__ import annotations

import msgspec

from raftkv.core.types import Entry, HardState

FORMAT_VERSION = 1


class SegmentHeader(msgspec.Struct, frozen=True, array_like=True):
    """The state when the segment was started, so older segments can be deleted.

    Invariant: every entry live at that moment has index <= prev_index, and entries at or below
    base_index were already covered by a durable snapshot.
    """

    version: int
    seq: int
    prev_index: int  # last log index when this segment was started
    base_index: int  # snapshot index the log was based on at that moment (0: none)
    hard_state: HardState


class Batch(msgspec.Struct, frozen=True, array_like=True):
    """One append(). Entries, if any, replace the log from entries[0].index on.

    synced: the offset in this segment through which the segment was durable (a sync had
    returned) when this record was written, so every byte before it had been synced: what
    recovery uses to tell damage of synced data from a torn or lost unsynced write. 0 in
    records from before this field. An empty batch that only carries it attests a sync.
    hard_state: the node's hard state as of this record (every record carries it since the
    field above exists, so a record after a damaged one still tells the term and vote)."""

    hard_state: HardState | None
    entries: list[Entry]
    synced: int = 0


class SnapshotMark(msgspec.Struct, frozen=True, array_like=True):
    """A snapshot at (index, term) is durable. kept_last is the last log index after the
    snapshot was applied: the old last index when the log matched at (index, term), else index
    (the log was discarded). Replay applies exactly that, without re-deciding the match."""

    index: int
    term: int
    kept_last: int
    synced: int = 0  # as in Batch
    hard_state: HardState | None = None  # as in Batch


class SnapshotBody(msgspec.Struct, frozen=True, array_like=True):
    version: int
    index: int
    term: int
    voters: list[str]
    data: bytes
    learners: list[str] = []  # added after format 1 shipped: older files decode with none


ENCODER = msgspec.msgpack.Encoder()
HEADER_DECODER = msgspec.msgpack.Decoder(SegmentHeader)
BATCH_DECODER = msgspec.msgpack.Decoder(Batch)
MARK_DECODER = msgspec.msgpack.Decoder(SnapshotMark)
SNAPSHOT_DECODER = msgspec.msgpack.Decoder(SnapshotBody)
