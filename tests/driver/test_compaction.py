"""When the driver snapshots (driver/compaction.py): entries or bytes, the log ratio for a large
store, per-node jitter, and 0 entries = never."""

from __future__ import annotations

import random

import pytest

from raftkv.driver.compaction import JITTER, SMALL_STATE, SnapshotPolicy, SnapshotSchedule

MB = 1024 * 1024


def test_zero_entries_means_never_whatever_the_bytes() -> None:
    schedule = SnapshotSchedule(SnapshotPolicy(entries=0, bytes=64 * MB), random.Random(1))
    schedule.applied(1_000_000, 10 * 64 * MB)
    assert not schedule.policy.enabled
    assert not schedule.due()


@pytest.mark.parametrize("seed", range(20))
def test_thresholds_are_stretched_by_less_than_the_jitter(seed: int) -> None:
    schedule = SnapshotSchedule(SnapshotPolicy(entries=1000, bytes=0), random.Random(seed))
    schedule.applied(999, 0)
    assert not schedule.due()
    schedule.applied(int(1000 * JITTER) + 1, 0)
    assert schedule.due()


def test_a_large_store_waits_for_a_log_as_large_as_its_last_snapshot() -> None:
    schedule = SnapshotSchedule(SnapshotPolicy(entries=100, bytes=0), random.Random(2))
    schedule.applied(200, MB)
    assert schedule.due()  # no snapshot yet: by entries alone
    schedule.taken(SMALL_STATE + 50 * MB, schedule.mark())
    schedule.applied(10_000, 49 * MB)
    assert not schedule.due()  # 10,000 entries, but less log than the snapshot beyond 4 MiB
    schedule.applied(1, MB)
    assert schedule.due()
