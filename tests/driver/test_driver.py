"""The driver's rules, one by one, with ports the test completes by hand."""

from __future__ import annotations

from raftkv.core.messages import AppendEntries, AppendEntriesResponse, RequestVoteResponse
from raftkv.core.types import Entry, HardState, Snapshot
from raftkv.driver import SnapshotPolicy
from raftkv.driver.driver import SNAPSHOT_RETRY_TICKS
from raftkv.errors import DiskError, DiskFull, NodeStopped, NotLeader
from raftkv.kv.commands import Put, encode_command

from .harness import Waiter, elect, rig, single_node


def _put(key: str) -> bytes:
    return encode_command(Put(key, b"v"))


def test_a_write_is_answered_only_after_its_sync() -> None:
    r = single_node()
    elect(r)
    w = Waiter()
    r.driver.propose(_put("a"), w)
    r.driver.run()
    assert r.log.calls[-1] == "append" and r.scheduler.syncs, "written, sync requested"
    assert not w.done(), "not durable here yet: not committed by a single voter"
    r.scheduler.complete_syncs()
    r.driver.run()
    assert w.done() and w.error is None
    _result, index = w.result
    assert index == 2 and r.wire.applied_indexes[-1] == 2


def test_one_sync_in_flight_and_later_writes_share_the_next() -> None:
    r = single_node()
    elect(r)
    first, second, third = Waiter(), Waiter(), Waiter()
    r.driver.propose(_put("a"), first)
    r.driver.run()
    r.driver.propose(_put("b"), second)
    r.driver.run()
    r.driver.propose(_put("c"), third)
    r.driver.run()
    assert r.log.calls.count("append") >= 4 and len(r.scheduler.syncs) == 1
    r.scheduler.complete_syncs()  # covers the first append only; starts one for the rest
    assert len(r.scheduler.syncs) == 1
    r.scheduler.complete_syncs()
    r.driver.run()
    assert first.done() and second.done() and third.done()


def test_votes_and_acks_leave_only_after_the_sync_they_depend_on() -> None:
    r = rig("n2", ("n1", "n2", "n3"))
    r.driver.deliver([AppendEntries(1, "n1", "n2", 0, 0, (Entry(1, 1),), 0)])
    r.driver.run()
    assert not [m for m in r.wire.sent if isinstance(m, AppendEntriesResponse)]
    assert r.log.appended and r.scheduler.syncs
    r.scheduler.complete_syncs()
    acks = [m for m in r.wire.sent if isinstance(m, AppendEntriesResponse)]
    assert [(a.success, a.index) for a in acks] == [(True, 1)]
    assert r.log.durable == r.log.appended


def test_an_ack_waits_for_an_earlier_write_still_in_flight() -> None:
    """A promise may rest on an earlier write: a repeated append (nothing new to write)
    is acknowledged only once the first write's sync is done."""
    r = rig("n2", ("n1", "n2", "n3"))
    append = AppendEntries(1, "n1", "n2", 0, 0, (Entry(1, 1),), 0)
    r.driver.deliver([append])
    r.driver.run()
    r.driver.deliver([append])  # duplicate: the entries are already written, not yet synced
    r.driver.run()
    assert not [m for m in r.wire.sent if isinstance(m, AppendEntriesResponse)]
    r.scheduler.complete_syncs()
    assert len([m for m in r.wire.sent if isinstance(m, AppendEntriesResponse)]) == 2


def test_a_granted_vote_leaves_after_the_vote_is_synced() -> None:
    from raftkv.core.messages import RequestVote  # noqa: PLC0415

    r = rig("n2", ("n1", "n2", "n3"))
    r.driver.deliver([RequestVote(1, "n1", "n2", 0, 0)])
    r.driver.run()
    assert r.log.appended[-1][0] == HardState(1, "n1", 0)
    assert not [m for m in r.wire.sent if isinstance(m, RequestVoteResponse)]
    r.scheduler.complete_syncs()
    votes = [m for m in r.wire.sent if isinstance(m, RequestVoteResponse)]
    assert [v.granted for v in votes] == [True]


def test_only_committed_entries_durable_here_are_applied() -> None:
    r = rig("n2", ("n1", "n2", "n3"))
    r.driver.deliver([AppendEntries(1, "n1", "n2", 0, 0, (Entry(1, 1), Entry(1, 2)), 0)])
    r.driver.run()
    r.scheduler.complete_syncs()
    r.driver.run()
    assert r.wire.applied_indexes == [], "durable but not committed"
    # The leader says 2 is committed, with a third entry this node has not synced yet.
    r.driver.deliver([AppendEntries(1, "n1", "n2", 2, 1, (Entry(1, 3),), 3)])
    r.driver.run()
    assert r.wire.applied_indexes == [1, 2], "3 is committed but not durable here"
    r.scheduler.complete_syncs()
    r.driver.run()
    assert r.wire.applied_indexes == [1, 2, 3]


def test_the_commit_index_alone_is_written_lazily_and_flushed_at_close() -> None:
    r = rig("n2", ("n1", "n2", "n3"))
    r.driver.deliver([AppendEntries(1, "n1", "n2", 0, 0, (Entry(1, 1),), 0)])
    r.driver.run()
    r.scheduler.complete_syncs()
    appends = len(r.log.appended)
    from raftkv.core.messages import Heartbeat  # noqa: PLC0415

    r.driver.deliver([Heartbeat(1, "n1", "n2", 1, 1)])  # moves only the commit index
    r.driver.run()
    assert len(r.log.appended) == appends and not r.scheduler.syncs
    r.driver.close()
    assert r.log.appended[-1] == (HardState(1, None, 1), ())
    assert r.log.calls[-1] == "sync"


def test_a_disk_error_stops_the_driver_and_fails_what_waits() -> None:
    r = single_node()
    elect(r)
    w = Waiter()
    r.driver.propose(_put("a"), w)
    r.driver.run()
    _job, done = r.scheduler.syncs.pop()
    done(DiskError("EIO (test)"))
    assert isinstance(r.driver.failed, DiskError)
    assert isinstance(w.error, DiskError)
    later = Waiter()
    r.driver.propose(_put("b"), later)
    assert isinstance(later.error, DiskError), "a stopped driver refuses at once"
    assert not r.scheduler.syncs, "a failed sync is never retried"


def test_proposals_get_disk_full_and_full_appends_are_dropped_unacknowledged() -> None:
    r = single_node()
    elect(r)
    r.log.full = True
    w = Waiter()
    r.driver.propose(_put("a"), w)
    r.driver.run()
    assert isinstance(w.error, DiskFull)
    f = rig("n2", ("n1", "n2", "n3"))
    f.log.full = True
    f.driver.deliver([AppendEntries(1, "n1", "n2", 0, 0, (Entry(1, 1),), 0)])
    f.driver.run()
    f.scheduler.complete_syncs()
    assert not f.log.appended and not [
        m for m in f.wire.sent if isinstance(m, AppendEntriesResponse)
    ]
    assert f.wire.refused and f.driver.raft.log.last_index() == 0


def test_a_follower_says_who_leads() -> None:
    r = rig("n2", ("n1", "n2", "n3"))
    r.driver.deliver([AppendEntries(1, "n1", "n2", 0, 0, (), 0)])
    r.driver.run()
    w = Waiter()
    r.driver.propose(_put("a"), w)
    r.driver.run()
    assert isinstance(w.error, NotLeader) and w.error.leader == "n1"


def test_close_fails_pending_requests_with_node_stopped() -> None:
    r = single_node()
    elect(r)
    w = Waiter()
    r.driver.propose(_put("a"), w)
    r.driver.run()
    r.driver.close()
    assert isinstance(w.error, NodeStopped)


def test_snapshots_are_written_off_the_loop_then_marked_and_compacted() -> None:
    r = single_node(SnapshotPolicy(entries=3, bytes=0, log_ratio=0.0))
    elect(r)
    for key in "abcde":
        r.driver.propose(_put(key), Waiter())
        r.driver.run()
        r.scheduler.complete_syncs()
        r.driver.run()
    assert r.scheduler.jobs, "a snapshot job was started"
    assert "write_snapshot_file" not in r.log.calls, "not written on the loop"
    r.scheduler.complete_jobs()
    assert r.log.marked and r.log.calls[-2:] == ["mark_snapshot", "compact"]
    assert r.driver.raft.log.snapshot_index == r.log.marked[-1]


def test_a_snapshot_due_while_one_is_written_starts_when_it_is_done() -> None:
    # An idle node has no next Ready to start it: the embedded library's restart test
    # waited for a snapshot that only the next write would have started.
    r = single_node(SnapshotPolicy(entries=2, bytes=0, log_ratio=0.0))
    elect(r)
    for key in "abcdefg":  # 3 (its snapshot in flight), then 4 more
        r.driver.propose(_put(key), Waiter())
        r.driver.run()
        r.scheduler.complete_syncs()
        r.driver.run()
    assert len(r.scheduler.jobs) == 1, "one snapshot at a time"
    first = r.driver.machine.applied_index
    r.scheduler.complete_jobs()
    assert r.log.marked and r.log.marked[-1] < first
    assert len(r.scheduler.jobs) == 1, "the one that came due meanwhile started"
    r.scheduler.complete_jobs()
    assert r.log.marked[-1] == first


def test_a_snapshot_that_cannot_be_written_is_retried_after_a_backoff_in_ticks() -> None:
    r = single_node(SnapshotPolicy(entries=2, bytes=0, log_ratio=0.0))
    elect(r)

    def write(key: str) -> None:
        r.driver.propose(_put(key), Waiter())
        r.driver.run()
        r.scheduler.complete_syncs()
        r.driver.run()

    r.log.snapshots_full = True
    write("a")
    write("b")
    r.scheduler.complete_jobs()
    assert r.wire.failed_snapshots and r.driver.failed is None, "the node serves on"
    write("c")
    assert not r.scheduler.jobs, "no new try during the backoff"
    r.log.snapshots_full = False
    r.driver.tick(SNAPSHOT_RETRY_TICKS[0])
    write("d")
    assert r.scheduler.jobs, "tried again after the backoff"
    r.scheduler.complete_jobs()
    assert r.wire.taken


def test_the_leaders_snapshot_replaces_the_log_once_durable() -> None:
    r = rig("n2", ("n1", "n2", "n3"))
    from raftkv.core.messages import InstallSnapshot  # noqa: PLC0415
    from raftkv.kv.store import KvStore  # noqa: PLC0415

    image = KvStore.restore(KvStore().snapshot()).snapshot()
    r.driver.deliver([InstallSnapshot(1, "n1", "n2", 5, 1, ("n1", "n2", "n3"), image)])
    r.driver.run()
    assert "install_snapshot" in r.log.calls
    assert r.driver.raft.log.snapshot_index == 0, "the term's sync is still in flight"
    assert not [m for m in r.wire.sent if isinstance(m, AppendEntriesResponse)]
    r.scheduler.complete_syncs()
    r.driver.run()
    assert r.driver.raft.log.snapshot_index == 5
    acks = [m for m in r.wire.sent if isinstance(m, AppendEntriesResponse)]
    assert [(a.success, a.index) for a in acks] == [(True, 5)]


def test_policy_zero_entries_means_never() -> None:
    r = single_node(SnapshotPolicy(entries=0, bytes=1, log_ratio=0.0))
    elect(r)
    for key in "abc":
        r.driver.propose(_put(key), Waiter())
        r.driver.run()
        r.scheduler.complete_syncs()
        r.driver.run()
    assert not r.scheduler.jobs


def test_snapshot_written_off_the_loop_holds_the_state_at_its_index() -> None:
    r = single_node(SnapshotPolicy(entries=2, bytes=0, log_ratio=0.0))
    elect(r)
    for key in "ab":
        r.driver.propose(_put(key), Waiter())
        r.driver.run()
        r.scheduler.complete_syncs()
        r.driver.run()
    assert r.scheduler.jobs
    r.driver.propose(_put("c"), Waiter())  # applied before the snapshot job runs
    r.driver.run()
    r.scheduler.complete_syncs()
    r.driver.run()
    r.scheduler.complete_jobs()
    snap: Snapshot = r.log.snapshot_files[-1]
    from raftkv.kv.store import KvStore  # noqa: PLC0415

    store = KvStore.restore(snap.data)
    assert store.applied_index == snap.index
    assert store.get("c") is None and store.get("b") is not None
