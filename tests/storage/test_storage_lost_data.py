"""The WAL on the simulator's file system (SimFs) under the faults a page cache brings: a
failed fsync whose data stays readable but never reaches the disk, a power cut that keeps any
subset of what was not synced, and damage of synced data, with a crash at any point of the
repair. Many seeds each: SimFs draws what a crash keeps."""

from __future__ import annotations

import copy
import errno
import random
from pathlib import Path

import pytest

from raftkv.core.types import Entry, HardState
from raftkv.errors import DiskError
from raftkv.sim.fs import SimFs
from raftkv.sim.storage import corrupt_synced_record
from raftkv.storage import LogStorage, Recovered

from .helpers import make

DIR = Path("/raft")
SEGMENT = 2048  # a few records per segment: rolls and older segments in every test


def open_log(fs: SimFs) -> tuple[LogStorage, Recovered]:
    return LogStorage.open(DIR, fs=fs, segment_bytes=SEGMENT, node_id="n1")


def test_a_failed_sync_leaves_its_data_readable_but_never_durable() -> None:
    fs = SimFs()
    fs.mkdir(Path("/d"))
    f = fs.open(Path("/d/x"), create=True)
    f.pwrite(b"synced", 0)
    f.datasync()
    f.pwrite(b"doomed", 6)
    fs.fail_syncs = 1
    with pytest.raises(OSError) as info:
        f.datasync()
    assert info.value.errno == errno.EIO and fs.failed_syncs == 1
    f.datasync()  # reports success, as Linux does, without the failed data
    assert fs.read_bytes(Path("/d/x")) == b"synceddoomed"  # still readable
    fs.crash(random.Random(0))
    assert fs.read_bytes(Path("/d/x")) == b"synced"


@pytest.mark.parametrize("seed", range(20))
def test_what_a_failed_fsync_left_in_the_page_cache_is_made_durable_at_restart(
    seed: int,
) -> None:
    """Issue 18 item 4 (as the faultfs test, on SimFs): the node stops at a failed fsync and
    restarts without a power cut; recovery reads the failed record from the page cache. It
    must write it again and sync it before the node uses it: records synced after it, and it,
    survive a later power cut."""
    fs = SimFs()
    storage, _ = open_log(fs)
    for i in range(1, 6):
        storage.save(HardState(1, "n1", i - 1), make(i, i, size=50))
    fs.fail_syncs = 1
    with pytest.raises(DiskError):
        storage.save(None, make(6, 6, size=50))
    fs.release_locks()  # the process exits (fail-stop); the host and its page cache stay
    storage, rec = open_log(fs)
    assert [e.index for e in rec.entries] == list(range(1, 7))  # 6, from the page cache
    for i in range(7, 10):
        storage.save(None, make(i, i, size=50))
    fs.crash(random.Random(seed))  # power cut
    storage, rec = open_log(fs)
    storage.close()
    assert rec.entries == make(1, 9, size=50)
    assert (rec.torn_tail, rec.lost_data) == (None, None)


@pytest.mark.parametrize("seed", range(40))
def test_holes_from_a_page_cache_writing_back_any_subset_are_torn_writes(seed: int) -> None:
    """Unsynced records may survive a power cut with holes before them. They were never
    synced, so never acknowledged: everything from the first hole is cut off, never refused
    as corruption, never taken for lost synced data, and all that was synced comes back."""
    rng = random.Random(seed)
    fs = SimFs(writeback="subset")
    storage, _ = open_log(fs)
    synced = rng.randrange(1, 30)
    for i in range(1, synced + 1):
        storage.save(HardState(1, "n1", i - 1), make(i, i, size=rng.randrange(10, 200)))
    unsynced = make(synced + 1, synced + rng.randrange(1, 15), size=60)
    for entry in unsynced:
        storage.append(None, [entry])
    fs.crash(rng)
    storage, rec = open_log(fs)
    storage.close()
    assert rec.lost_data is None
    indexes = [e.index for e in rec.entries]
    assert indexes == list(range(1, len(indexes) + 1)) and len(indexes) >= synced


def _history(fs: SimFs, rng: random.Random) -> tuple[HardState, list[Entry]]:
    """Saves over several segments (with a vote, suffix overwrites); the final hard state
    and log."""
    storage, _ = open_log(fs)
    log: list[Entry] = []
    hard = HardState()
    for i in range(1, 40):
        term = 1 + i // 10
        vote = "n2" if i % 10 >= 3 else None  # one vote per term, kept once cast
        hard = HardState(term, vote, max(0, len(log) - 2))
        first = max(1, len(log) + 1 - rng.randrange(0, 3))
        entries = make(first, first + rng.randrange(0, 3), term=term, size=40)
        del log[first - 1 :]
        log += entries
        storage.save(hard, entries)
    storage.close()
    return hard, log


@pytest.mark.parametrize("seed", range(30))
def test_damaged_synced_data_is_reported_and_survives_a_crash_at_any_point_of_its_repair(
    seed: int,
) -> None:
    """A byte of a synced, attested record is damaged. Recovery keeps the log up to it and
    says that it lost data (lost_from), keeping the newest term and vote; a power cut at any
    sync of the repair loses none of that: the next recovery says the same."""
    rng = random.Random(seed)
    fs = SimFs()
    hard, log = _history(fs, rng)
    assert corrupt_synced_record(fs, rng) is not None
    cuts = 0
    for cut_at in range(1, 10):
        trial = _copy(fs)
        trial.power_cut_after = cut_at
        found: list[Recovered] = []
        try:
            storage, first = open_log(trial)
            storage.close()
            found.append(first)
        except _PowerCut:
            trial.crash(rng)
            cuts += 1
        trial.power_cut_after = 0
        storage, again = open_log(trial)
        storage.close()
        for rec in [*found, again]:
            lost_from = rec.hard_state.lost_from
            assert 0 < lost_from <= rec.hard_state.commit + 1, (cut_at, rec.hard_state)
            assert (rec.hard_state.term, rec.hard_state.vote) == (hard.term, hard.vote)
            assert rec.entries[: lost_from - 1] == log[: lost_from - 1], cut_at
    assert cuts >= 3  # the repair's syncs: its marker, a segment dropped or not, its cut


class _PowerCut(Exception):
    """Raised by _CuttableFs at the chosen sync: a power cut before that sync returns."""


class _CuttableFs(SimFs):
    power_cut_after = 0  # 0: never

    def before_sync(self) -> None:
        if self.power_cut_after:
            self.power_cut_after -= 1
            if not self.power_cut_after:
                raise _PowerCut
        super().before_sync()


def _copy(fs: SimFs) -> _CuttableFs:
    """An independent copy of fs, whose syncs can be cut."""
    new = _CuttableFs()
    new.root = copy.deepcopy(fs.root)
    return new
