"""When a snapshot is due: entries or bytes since the last one, and for a large state a log
at least log_ratio times what it holds beyond SMALL_STATE; thresholds stretched per node."""

from __future__ import annotations

import random

import pytest

from raftkv.driver.compaction import JITTER, SMALL_STATE, SnapshotPolicy, SnapshotSchedule
from raftkv.errors import BadRequest

MIB = 1024 * 1024


def schedule(policy: SnapshotPolicy, seed: int = 0) -> SnapshotSchedule:
    return SnapshotSchedule(policy, random.Random(seed))


def test_zero_entries_means_never_whatever_the_bytes() -> None:
    s = schedule(SnapshotPolicy(entries=0, bytes=1, log_ratio=0.0))
    s.applied(10**6, 10**9)
    assert not s.due()


def test_due_after_the_stretched_entry_count() -> None:
    for seed in range(20):
        s = schedule(SnapshotPolicy(entries=100, bytes=0, log_ratio=0.0), seed)
        s.applied(99, 0)
        assert not s.due()
        s.applied(int(100 * JITTER) + 1, 0)
        assert s.due()


def test_nodes_stretch_their_thresholds_differently() -> None:
    firsts = set()
    for seed in range(20):
        s = schedule(SnapshotPolicy(entries=1000, bytes=0, log_ratio=0.0), seed)
        n = 0
        while not s.due():
            s.applied(1, 0)
            n += 1
        firsts.add(n)
        assert 1000 <= n < 1000 * (1 + JITTER) + 1
    assert len(firsts) > 10


def test_bytes_alone_can_make_it_due() -> None:
    s = schedule(SnapshotPolicy(entries=10**9, bytes=MIB, log_ratio=0.0))
    s.applied(1, 2 * MIB)
    assert s.due()


def test_a_large_state_waits_for_a_log_about_as_large() -> None:
    s = schedule(SnapshotPolicy(entries=10, bytes=0, log_ratio=1.0))
    s.applied(100, MIB)
    assert s.due(), "a small state snapshots by entries alone"
    covered = s.mark()
    s.taken(200 * MIB, covered)
    s.applied(10_000, 100 * MIB)
    assert not s.due(), "200 MiB of state is not rewritten for 100 MiB of log"
    s.applied(10_000, 100 * MIB - SMALL_STATE)
    assert s.due()


def test_entries_applied_while_a_snapshot_is_written_count_for_the_next() -> None:
    s = schedule(SnapshotPolicy(entries=100, bytes=0, log_ratio=0.0))
    s.applied(200, 0)
    covered = s.mark()
    s.applied(50, 0)  # while the snapshot is encoded off the loop
    s.taken(1000, covered)
    assert s.entries == 50


@pytest.mark.parametrize(
    "policy",
    [
        SnapshotPolicy(entries=-1),
        SnapshotPolicy(bytes=-1),
        SnapshotPolicy(log_ratio=-0.5),
    ],
)
def test_bad_policies_are_refused(policy: SnapshotPolicy) -> None:
    with pytest.raises(BadRequest):
        policy.validate()
