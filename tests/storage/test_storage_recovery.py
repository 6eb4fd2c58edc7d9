"""Recovery: a torn tail cut at any byte is truncated and reported; corruption is refused."""

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


def _write_history(directory: Path) -> Path:
    storage, _ = LogStorage.open(directory, segment_bytes=SEGMENT, sync=False)
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
        complete = sum(1 for end in ends if end <= cut)
        want_hs, want_log = _model(BATCHES[:complete])
        for image in (full[:cut], full[:cut] + bytes(len(full) - cut)):  # EOF, then zero fill
            path.write_bytes(image)
            storage, recovered = LogStorage.open(work, segment_bytes=SEGMENT, sync=False)
            storage.close()
            assert recovered.entries == want_log, cut
            assert recovered.hard_state == want_hs, cut
            at_boundary = cut in ends or cut == header_end
            assert (recovered.torn_tail is None) == at_boundary, (cut, recovered.torn_tail)
            if not at_boundary:
                assert recovered.torn_tail is not None
                assert f"offset {max(e for e in [header_end, *ends] if e <= cut)}" in (
                    recovered.torn_tail
                )
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


@pytest.mark.parametrize("which", [1, 3, 5, 8])
def test_flipped_byte_before_the_tail_is_corruption(tmp_path: Path, which: int) -> None:
    path = _write_history(tmp_path / "orig")
    rec = records(path)[which]
    work = tmp_path / "work"
    for offset in range(rec.offset, rec.end):  # every byte: header and payload
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(path.parent, work)
        flip(work / path.name, offset)
        with pytest.raises(CorruptionError) as info:
            LogStorage.open(work, segment_bytes=SEGMENT, sync=False)
        assert info.value.path == str(work / path.name)
        assert info.value.offset == rec.offset
        assert f"offset {rec.offset}" in str(info.value)


def test_flipped_byte_in_the_last_record_is_reported_as_torn(tmp_path: Path) -> None:
    # Indistinguishable from a torn write of the last batch: truncated and reported, never silent.
    path = _write_history(tmp_path)
    last = records(path)[-1]
    flip(path, last.offset + 12)
    storage, recovered = LogStorage.open(tmp_path, segment_bytes=SEGMENT)
    storage.close()
    assert recovered.torn_tail is not None
    assert f"offset {last.offset}" in recovered.torn_tail
    assert (recovered.hard_state, recovered.entries) == _model(BATCHES[:-1])


def _many_segments(directory: Path) -> list[Path]:
    storage, _ = LogStorage.open(directory, segment_bytes=1024, sync=False)
    for i in range(1, 61):
        storage.save(HardState(1, "n1", i), make(i, i, size=100))
    storage.close()
    return segments(directory)


def test_corruption_in_a_non_last_segment_even_at_its_end(tmp_path: Path) -> None:
    paths = _many_segments(tmp_path)
    assert len(paths) >= 4
    victim = paths[1]
    last_record = records(victim)[-1]
    flip(victim, last_record.end - 1)
    with pytest.raises(CorruptionError, match="not the last") as info:
        LogStorage.open(tmp_path, segment_bytes=1024)
    assert (info.value.path, info.value.offset) == (str(victim), last_record.offset)


def test_garbage_after_zero_fill_in_a_non_last_segment(tmp_path: Path) -> None:
    paths = _many_segments(tmp_path)
    with_room = [p for p in paths[:-1] if p.stat().st_size - records(p)[-1].end > 1]
    victim = with_room[0]
    end = records(victim)[-1].end
    buf = bytearray(victim.read_bytes())
    buf[-1] = 7
    victim.write_bytes(bytes(buf))
    with pytest.raises(CorruptionError) as info:
        LogStorage.open(tmp_path, segment_bytes=1024)
    assert (info.value.path, info.value.offset) == (str(victim), end)


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
