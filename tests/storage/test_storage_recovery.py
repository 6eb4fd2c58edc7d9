"""Recovery: a torn tail cut at any byte is truncated and reported; damage of data that had
been synced is lost data (the node recovers its log from its peers), never a torn write; bad
headers and missing segments are refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from raftkv.core.types import Entry, HardState
from raftkv.errors import CorruptionError
from raftkv.storage import LogStorage
from raftkv.storage.segment import segment_name

from .helpers import flip, make, records, segments

SEGMENT = 4096

# A history of saves, including hard-state-only saves and suffix overwrites.
BATCHES: list[tuple[HardState | None, list[Entry]]] = [
    (HardState(1, "n1", 0), make(1, 1)),
    (None, make(2, 4, size=30)),
    (HardState(1, "n1", 3), []),
    (None, make(5, 5, size=200)),
    (HardState(2, None, 3), make(4, 6, term=2)),
    (None, make(7, 12, term=2)),
    (HardState(2, "n2", 9), []),
    (None, make(10, 10, term=3, size=60)),
    (HardState(3, "n2", 10), make(11, 14, term=3)),
    (None, make(15, 15, term=3, size=500)),
    (HardState(3, "n2", 15), make(16, 16, term=3)),
]


def _model(batches: list[tuple[HardState | None, list[Entry]]]) -> tuple[HardState, list[Entry]]:
    hard_state, log = HardState(), list[Entry]()
    for hs, entries in batches:
        hard_state = hs if hs is not None else hard_state
        if entries:
            del log[entries[0].index - 1 :]
            log.extend(entries)
    return hard_state, log


def _write_history(directory: Path, *, sync: bool = False) -> Path:
    """BATCHES in one segment; with sync, each one synced (and so attested by the next)."""
    storage, _ = LogStorage.open(directory, segment_bytes=SEGMENT, sync=sync)
    for hs, entries in BATCHES:
        storage.save(hs, entries)
    storage.close()
    [path] = segments(directory)
    return path


def test_cut_at_every_byte_recovers_a_clean_prefix(tmp_path: Path) -> None:
    original = _write_history(tmp_path / "orig")
    full = original.read_bytes()
    recs = records(original)
    assert len(recs) == 1 + len(BATCHES)
    header_end, used_end = recs[0].end, recs[-1].end
    ends = [r.end for r in recs[1:]]  # batch k is complete iff its record ends <= cut

    work = tmp_path / "work"
    work.mkdir()
    path = work / segment_name(1)
    checked = 0
    for cut in range(header_end, used_end + 1):
        for image in (full[:cut], full[:cut] + bytes(len(full) - cut)):  # EOF, then zero fill
            # A record is whole if its end was written, or if what was not is zero (and the
            # zero fill restores it: a record may end in zero bytes).
            complete = sum(1 for end in ends if end <= cut or full[cut:end] == image[cut:end])
            want_hs, want_log = _model(BATCHES[:complete])
            prefix_end = ([header_end, *ends])[complete]
            path.write_bytes(image)
            storage, recovered = LogStorage.open(work, segment_bytes=SEGMENT, sync=False)
            storage.close()
            assert recovered.entries == want_log, cut
            assert recovered.hard_state == want_hs, cut
            clean = not any(image[prefix_end:])
            assert (recovered.torn_tail is None) == clean, (cut, recovered.torn_tail)
            if not clean:
                assert recovered.torn_tail is not None
                assert f"offset {prefix_end}" in recovered.torn_tail
            assert recovered.lost_data is None  # nothing was synced: all of it may be torn
            checked += 1
    assert checked == 2 * (used_end - header_end + 1)


def test_writing_after_a_torn_tail_then_reopening(tmp_path: Path) -> None:
    path = _write_history(tmp_path)
    recs = records(path)
    cut = recs[-1].offset + 7  # inside the last record's header
    image = path.read_bytes()
    path.write_bytes(image[:cut] + b"\x55" * 300 + bytes(len(image) - cut - 300))
    storage, recovered = LogStorage.open(tmp_path, segment_bytes=SEGMENT)
    assert recovered.torn_tail is not None
    assert str(path) in recovered.torn_tail
    want_hs, want_log = _model(BATCHES[:-1])
    assert (recovered.hard_state, recovered.entries) == (want_hs, want_log)
    storage.save(None, [Entry(9, 16, data=b"new")])
    storage.close()
    storage, recovered = LogStorage.open(tmp_path, segment_bytes=SEGMENT)
    storage.close()
    assert recovered.torn_tail is None  # the garbage was zeroed, not left behind the new record
    assert recovered.entries == [*want_log, Entry(9, 16, data=b"new")]


def _lost(batches: int) -> HardState:
    """The hard state after losing BATCHES[batches:] (their first record damaged): the
    commit of what is kept, recovering past it, and the newest term and vote (every record
    carries them, so the last one tells them)."""
    kept, _ = _model(BATCHES[:batches])
    final, _ = _model(BATCHES)
    return HardState(final.term, final.vote, kept.commit, kept.commit + 1)


@pytest.mark.parametrize("which", [1, 3, 5, 8, len(BATCHES)])
def test_a_flipped_byte_in_synced_data_is_lost_data_not_a_torn_write(
    tmp_path: Path, which: int
) -> None:
    """Each batch was synced, and the next record (for the last one: the record close()
    writes) says so: damage anywhere in one is damage of data this node may have
    acknowledged. The log is kept up to it, and the node recovers the rest from its peers."""
    path = _write_history(tmp_path / "orig", sync=True)
    rec = records(path)[which]
    work = tmp_path / "work"
    for offset in [*range(rec.offset, rec.offset + 9), *range(rec.offset + 9, rec.end, 7)]:
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(path.parent, work)
        flip(work / path.name, offset)
        storage, recovered = LogStorage.open(work, segment_bytes=SEGMENT, sync=False)
        storage.close()
        assert recovered.torn_tail is None, offset
        assert recovered.lost_data is not None, offset
        assert f"LOST SYNCED DATA at offset {rec.offset}" in recovered.lost_data
        assert recovered.entries == _model(BATCHES[: which - 1])[1], offset
        assert recovered.hard_state == _lost(which - 1), offset
    # The damage is cut off for good, and the node is still recovering after a restart.
    storage, again = LogStorage.open(work, segment_bytes=SEGMENT)
    storage.close()
    assert (again.torn_tail, again.lost_data) == (None, None)
    assert (again.hard_state, again.entries) == (recovered.hard_state, recovered.entries)


def _crash_copy(live: Path, to: Path) -> Path:
    """The files as a crash would leave them now (no close(): it would attest the tail)."""
    shutil.copytree(live, to)
    return to


def test_a_record_synced_but_not_attested_is_taken_for_a_torn_write(tmp_path: Path) -> None:
    """The documented limit: a record whose sync returned, but that no later durable record
    attests (a crash right after the sync, before any other write), cannot be told from a
    torn write when it is damaged. Without close() here, nothing attests the last batch."""
    storage, _ = LogStorage.open(tmp_path / "live", segment_bytes=SEGMENT)
    for hs, entries in BATCHES:
        storage.save(hs, entries)
    crashed = _crash_copy(tmp_path / "live", tmp_path / "crashed")
    storage.close()
    path = segments(crashed)[0]
    last = records(path)[-1]
    flip(path, last.offset + 12)
    storage, recovered = LogStorage.open(crashed, segment_bytes=SEGMENT)
    storage.close()
    assert recovered.lost_data is None
    assert recovered.torn_tail is not None and f"offset {last.offset}" in recovered.torn_tail
    assert (recovered.hard_state, recovered.entries) == _model(BATCHES[:-1])


def test_a_hole_then_valid_records_that_were_never_synced_is_a_torn_write(
    tmp_path: Path,
) -> None:
    """A page cache writes back any subset of what was not synced: after a power cut the
    records past the last sync may have holes, with valid records after them. None of them
    was synced (the valid ones say so), so none was acknowledged: cut off at the hole, not
    refused as corruption (as before), and not taken for lost synced data."""
    storage, _ = LogStorage.open(tmp_path / "live", segment_bytes=SEGMENT)
    storage.save(HardState(1, "n1", 0), make(1, 3))
    for i in range(4, 8):
        storage.append(None, make(i, i, size=40))  # never synced
    crashed = _crash_copy(tmp_path / "live", tmp_path / "crashed")
    storage.close()
    path = segments(crashed)[0]
    recs = records(path)
    hole = recs[3]  # entry 5: lost in the cut; 6 and 7 were written back
    buf = bytearray(path.read_bytes())
    buf[hole.offset : hole.end] = bytes(hole.end - hole.offset)
    path.write_bytes(bytes(buf))
    storage, recovered = LogStorage.open(crashed, segment_bytes=SEGMENT)
    storage.close()
    assert recovered.lost_data is None
    assert recovered.torn_tail is not None and f"offset {hole.offset}" in recovered.torn_tail
    assert [e.index for e in recovered.entries] == [1, 2, 3, 4]
    assert recovered.hard_state == HardState(1, "n1", 0)


def _many_segments(directory: Path) -> list[Path]:
    storage, _ = LogStorage.open(directory, segment_bytes=1024, sync=False)
    for i in range(1, 61):
        storage.save(HardState(1, "n1", i), make(i, i, size=100))
    storage.close()
    return segments(directory)


def test_damage_in_an_older_segment_is_lost_data(tmp_path: Path) -> None:
    """A segment is synced whole before the next one starts: damage anywhere in it is lost
    synced data. The log ends before it; the later segments (written on top of it) go."""
    paths = _many_segments(tmp_path)
    assert len(paths) >= 4
    victim = paths[1]
    kept = records(victim)[:-1]
    last_record = records(victim)[-1]
    flip(victim, last_record.end - 1)
    storage, recovered = LogStorage.open(tmp_path, segment_bytes=1024)
    storage.close()
    assert recovered.lost_data is not None
    assert f"{victim}: LOST SYNCED DATA at offset {last_record.offset}" in recovered.lost_data
    assert f"{len(paths) - 2} later WAL segment(s) dropped" in recovered.lost_data
    assert segments(tmp_path) == paths[:2]
    last_kept = len(records(paths[0])) - 1 + len(kept) - 1  # one entry per batch record
    assert [e.index for e in recovered.entries] == list(range(1, last_kept + 1))
    # Every record carries the hard state: the dropped segments' newest one is kept.
    assert recovered.hard_state == HardState(1, "n1", last_kept, last_kept + 1)
    storage, again = LogStorage.open(tmp_path, segment_bytes=1024)
    storage.save(None, make(last_kept + 1, last_kept + 40, size=100))  # rolls on from there
    storage.close()
    assert again.lost_data is None and again.hard_state == recovered.hard_state
    storage, again = LogStorage.open(tmp_path, segment_bytes=1024)
    storage.close()
    assert [e.index for e in again.entries] == list(range(1, last_kept + 41))


def test_garbage_after_zero_fill_in_a_non_last_segment(tmp_path: Path) -> None:
    paths = _many_segments(tmp_path)
    with_room = [p for p in paths[:-1] if p.stat().st_size - records(p)[-1].end > 1]
    victim = with_room[0]
    end = records(victim)[-1].end
    buf = bytearray(victim.read_bytes())
    buf[-1] = 7
    victim.write_bytes(bytes(buf))
    storage, recovered = LogStorage.open(tmp_path, segment_bytes=1024)
    storage.close()
    assert recovered.lost_data is not None
    assert f"{victim}: LOST SYNCED DATA at offset {end}" in recovered.lost_data
    assert recovered.hard_state.lost_from == recovered.hard_state.commit + 1


def test_missing_middle_segment(tmp_path: Path) -> None:
    paths = _many_segments(tmp_path)
    paths[2].unlink()
    with pytest.raises(CorruptionError, match="missing") as info:
        LogStorage.open(tmp_path, segment_bytes=1024)
    assert info.value.path == str(paths[3])


def test_missing_first_segment_without_snapshot(tmp_path: Path) -> None:
    paths = _many_segments(tmp_path)
    paths[0].unlink()
    with pytest.raises(CorruptionError, match="missing"):
        LogStorage.open(tmp_path, segment_bytes=1024)


def test_damaged_segment_header_or_magic(tmp_path: Path) -> None:
    path = _write_history(tmp_path)
    flip(path, 2)  # magic
    with pytest.raises(CorruptionError, match="magic") as info:
        LogStorage.open(tmp_path)
    assert info.value.offset == 0
    flip(path, 2)
    flip(path, 20)  # inside the header record: durable before the file had its name
    with pytest.raises(CorruptionError, match="header") as info:
        LogStorage.open(tmp_path)
    assert info.value.offset == 8
