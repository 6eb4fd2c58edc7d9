"""Reading the WAL at recovery, and deciding what damage in it means (no writes here).

Every record carries `synced`: the offset through which its segment had been made durable (a
sync had returned) when it was written. So after a crash recovery knows, for each segment, an
attested prefix that was synced: the largest `synced` of any valid record in it (records found
past the damage count too), at least its header (synced before the file got its name), and
the whole of any segment but the last (a segment is synced before the next one starts).

Damage (bytes that are neither a valid record nor zero fill) then means:

- inside the attested prefix: LOST SYNCED DATA. The node may have acknowledged what it held
  there. The log is kept up to the damage and no further (later records were written on top
  of what is gone), later segments are dropped, and the node recovers its log from its peers
  (HardState.lost_from; the core votes for no one meanwhile). Term and vote come from the
  newest valid record anywhere, so a vote survives the damage of the record that held it.
- past it, in the last segment: a TORN or LOST UNSYNCED WRITE, even when valid records follow
  (a page cache writes back any subset of what was not synced: holes, then records). None of
  it was ever synced, so none was acknowledged: it is cut off.

The limit: a record whose sync returned, but that no later durable record attests (the last
records before a crash, or before an idle spell), is classified by the rule above as unsynced.
Damage there is taken for a torn write. LogStorage.close() attests the tail, so a clean stop
leaves no such record.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import msgspec

from raftkv.core.types import HardState, Snapshot
from raftkv.errors import CorruptionError
from raftkv.storage.fs import FileSystem
from raftkv.storage.record import Record, RecordType
from raftkv.storage.replay import Replayer
from raftkv.storage.schema import (
    BATCH_DECODER,
    FORMAT_VERSION,
    HEADER_DECODER,
    MARK_DECODER,
    SegmentHeader,
)
from raftkv.storage.segment import Damage, ScannedSegment, scan_segment

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Clean:
    attested: int  # the last segment is synced through here; after it, to rewrite and sync


@dataclass(frozen=True, slots=True)
class Torn:
    attested: int
    damage: Damage  # in the last segment, at or past attested: cut off


@dataclass(frozen=True, slots=True)
class Lost:
    damage: Damage  # in scan.current, before its attested prefix ends
    dropped: list[Path]  # the later segments, whose records rest on what is gone
    hard_state: HardState  # newest term and vote found anywhere; commit and lost_from to keep


ScanOutcome = Clean | Torn | Lost


@dataclass(frozen=True, slots=True)
class WalScan:
    segments: list[tuple[int, Path, SegmentHeader]]  # the kept segments, in order
    replayer: Replayer  # has replayed every kept record
    current: ScannedSegment  # the segment appends go on in (the last kept one)
    buf: bytes  # its bytes
    outcome: ScanOutcome


def read_wal(fs: FileSystem, found: list[tuple[int, Path]], snapshot: Snapshot | None) -> WalScan:
    """Replay the segments (seq, path) in order up to the first damage, and classify it."""
    replayer = Replayer(snapshot)
    kept: list[tuple[int, Path, SegmentHeader]] = []
    for k, (seq, path) in enumerate(found):
        buf = fs.read_bytes(path)
        scanned = scan_segment(path, buf)
        header, synced = _replay(replayer, seq, scanned)
        kept.append((seq, path, header))
        last = k == len(found) - 1
        attested = max(synced, scanned.records[0].end, _synced(scanned.beyond))
        if not last:
            attested = len(buf)
        damage = scanned.damage
        if damage is not None and damage.offset < attested:
            later = [p for _, p in found[k + 1 :]]
            hard = _lost_hard_state(fs, replayer, scanned.beyond, later, snapshot)
            return WalScan(kept, replayer, scanned, buf, Lost(damage, later, hard))
        if last:
            outcome: ScanOutcome = Clean(attested) if damage is None else Torn(attested, damage)
            return WalScan(kept, replayer, scanned, buf, outcome)
    raise AssertionError("read_wal needs at least one segment")


def _replay(replayer: Replayer, seq: int, scanned: ScannedSegment) -> tuple[SegmentHeader, int]:
    """Replay a segment's valid records; its header and the largest `synced` among them."""
    where = str(scanned.path)
    first = scanned.records[0]
    header = _decode(HEADER_DECODER, first, where)
    if header.version != FORMAT_VERSION or header.seq != seq:
        raise CorruptionError(
            f"segment header says version {header.version} seq {header.seq}, "
            f"expected version {FORMAT_VERSION} seq {seq}",
            where,
            first.offset,
        )
    replayer.header(header, where, first.offset)
    synced = 0
    for rec in scanned.records[1:]:
        if rec.rtype is RecordType.BATCH:
            batch = _decode(BATCH_DECODER, rec, where)
            replayer.batch(batch, where, rec.offset)
            synced = max(synced, batch.synced)
        elif rec.rtype is RecordType.SNAPSHOT_MARK:
            mark = _decode(MARK_DECODER, rec, where)
            replayer.mark(mark, where, rec.offset)
            synced = max(synced, mark.synced)
        else:
            raise CorruptionError(f"unexpected {rec.rtype.name} record", where, rec.offset)
    return header, synced


def _synced(records: Iterable[Record]) -> int:
    """The largest `synced` among records that are not replayed (undecodable ones: none)."""
    best = 0
    for rec in records:
        with contextlib.suppress(msgspec.DecodeError):
            if rec.rtype is RecordType.BATCH:
                best = max(best, BATCH_DECODER.decode(rec.payload).synced)
            elif rec.rtype is RecordType.SNAPSHOT_MARK:
                best = max(best, MARK_DECODER.decode(rec.payload).synced)
    return best


def _lost_hard_state(
    fs: FileSystem,
    replayer: Replayer,
    beyond: list[Record],
    later: list[Path],
    snapshot: Snapshot | None,
) -> HardState:
    """The hard state to recover with after losing synced data: the newest term and vote of
    any valid record (terms only grow, and a node votes once per term, so the largest is the
    last); the commit of the kept records (entries they hold beyond it may have been replaced
    by what is lost); lost_from just past that commit (or an unfinished earlier recovery's,
    if that is lower)."""
    kept = replayer.hard_state
    found = [kept, *_hard_states(beyond)]
    for path in later:
        try:
            scanned = scan_segment(path, fs.read_bytes(path))
        except CorruptionError:
            continue  # a bad header: it has nothing to tell
        found += _hard_states([*scanned.records, *scanned.beyond])
    newest = max(found, key=lambda hs: (hs.term, hs.vote is not None))
    base = snapshot.index if snapshot is not None else 0
    # Still recovering from an earlier loss (as of the kept records, or the last one found)?
    earlier = [hs.lost_from for hs in (kept, found[-1]) if hs.lost_from > 0]
    lost_from = min([max(kept.commit, base) + 1, *earlier])
    return HardState(newest.term, newest.vote, kept.commit, lost_from)


def _hard_states(records: Iterable[Record]) -> list[HardState]:
    found: list[HardState] = []
    for rec in records:
        with contextlib.suppress(msgspec.DecodeError):
            hs: HardState | None = None
            if rec.rtype is RecordType.BATCH:
                hs = BATCH_DECODER.decode(rec.payload).hard_state
            elif rec.rtype is RecordType.SNAPSHOT_MARK:
                hs = MARK_DECODER.decode(rec.payload).hard_state
            elif rec.rtype is RecordType.SEGMENT_HEADER:
                hs = HEADER_DECODER.decode(rec.payload).hard_state
            if hs is not None:
                found.append(hs)
    return found


def _decode(decoder: msgspec.msgpack.Decoder[_T], record: Record, where: str) -> _T:
    try:
        return decoder.decode(record.payload)
    except msgspec.DecodeError as exc:
        raise CorruptionError(
            f"{record.rtype.name} record has a valid checksum but cannot be decoded: {exc}",
            where,
            record.offset,
        ) from exc
