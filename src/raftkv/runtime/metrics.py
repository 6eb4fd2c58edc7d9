"""Prometheus metrics of one node, in a registry of its own (several nodes may share a process).

Gauges that mirror Raft state are read at scrape time (set_function), so the Ready loop pays
nothing for them; counters and histograms are updated where things happen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from raftkv.core.messages import MESSAGE_TYPES
from raftkv.core.types import Role
from raftkv.storage import StorageStats

_LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)
_TYPES = [t.__name__ for t in MESSAGE_TYPES]


class NodeMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.term = Gauge("raftkv_term", "Current Raft term", registry=r)
        self.role = Gauge("raftkv_role", "1 for the node's current role", ["role"], registry=r)
        self.commit_index = Gauge("raftkv_commit_index", "Raft commit index", registry=r)
        self.applied_index = Gauge("raftkv_applied_index", "Last applied index", registry=r)
        self.last_index = Gauge("raftkv_last_index", "Last log index", registry=r)
        self.pending = Gauge(
            "raftkv_pending_requests", "Requests waiting on Raft", ["kind"], registry=r
        )
        self.proposals = Counter(
            "raftkv_proposals", "Commands proposed to the Raft log", registry=r
        )
        self.proposals_failed = Counter(
            "raftkv_proposals_failed", "Proposals refused (not leader, transfer)", registry=r
        )
        self.proposal_batch = Histogram(
            "raftkv_proposal_batch_size",
            "Commands per propose_many call (group commit)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=r,
        )
        self.fsync = Histogram(
            "raftkv_fsync_seconds",
            "Duration of one durable log write (one fdatasync)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.apply = Histogram(
            "raftkv_apply_seconds",
            "Duration of applying one Ready's committed entries",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.leader_changes = Counter(
            "raftkv_leader_changes", "Times the known leader changed", registry=r
        )
        self.loop_lag = _MaxHistogram(
            "raftkv_loop_lag_seconds",
            "How late the event loop delivered each Raft tick (the ticker's wake-up): what a "
            "blocked loop delays, heartbeats included",
            r,
        )
        self.leader_silence = _MaxHistogram(
            "raftkv_leader_silence_seconds",
            "On a follower: time between two consecutive cycles in which its Raft core took "
            "messages from the leader (a heartbeat or append); an election starts when this "
            "exceeds the election timeout",
            r,
        )
        snapshots = Counter(
            "raftkv_snapshots",
            "Snapshots taken here (log compaction), installed from the leader, or failed to "
            "write (the log is kept and the snapshot retried)",
            ["kind"],
            registry=r,
        )
        self.snapshots_taken = snapshots.labels("taken")
        self.snapshots_installed = snapshots.labels("installed")
        self.snapshots_failed = snapshots.labels("failed")
        self.snapshot_index = Gauge(
            "raftkv_snapshot_index",
            "Index of the newest snapshot: the log starts after it",
            registry=r,
        )
        self.members = Gauge(
            "raftkv_members", "Members of the newest configuration in the log", ["role"], registry=r
        )
        sent = Counter("raftkv_messages_sent", "Raft messages sent", ["type"], registry=r)
        received = Counter(
            "raftkv_messages_received", "Raft messages received", ["type"], registry=r
        )
        dropped = Counter(
            "raftkv_messages_dropped",
            "Raft messages dropped (fault injection, full queue, no connection)",
            ["type"],
            registry=r,
        )
        self.link_up = Gauge(
            "raftkv_peer_link_up",
            "1 while the outbound link to the peer is connected and handshaken, else 0",
            ["peer"],
            registry=r,
        )
        self.link_failures = Counter(
            "raftkv_peer_link_failures",
            "Failures of the outbound link to the peer: failed dials, lost connections, "
            "restarts of its task",
            ["peer"],
            registry=r,
        )
        self.http_connections = Gauge(
            "raftkv_http_connections",
            "HTTP connections now, by budget: client, stream (SSE), peer (forwarded requests), "
            "overflow (over the client limit, awaiting their first request)",
            ["budget"],
            registry=r,
        )
        self.sent = {t: sent.labels(t) for t in _TYPES}
        self.received = {t: received.labels(t) for t in _TYPES}
        self.dropped = {t: dropped.labels(t) for t in _TYPES}

    def bind_link(self, peer: str, up: Callable[[], float]) -> None:
        """The link gauge of peer reads up() at scrape time; its failure counter shows 0."""
        self.link_up.labels(peer).set_function(up)
        self.link_failures.labels(peer)

    def forget_link(self, peer: str) -> None:
        """peer left the configuration: drop its link series."""
        self.link_up.remove(peer)
        self.link_failures.remove(peer)

    def bind_state(
        self,
        *,
        term: Callable[[], float],
        role: Callable[[], Role],
        commit_index: Callable[[], float],
        applied_index: Callable[[], float],
        last_index: Callable[[], float],
        pending_writes: Callable[[], float],
        pending_reads: Callable[[], float],
        snapshot_index: Callable[[], float],
        voters: Callable[[], float],
        learners: Callable[[], float],
    ) -> None:
        """Read these at scrape time."""
        self.snapshot_index.set_function(snapshot_index)
        self.members.labels("voter").set_function(voters)
        self.members.labels("learner").set_function(learners)
        self.term.set_function(term)
        self.commit_index.set_function(commit_index)
        self.applied_index.set_function(applied_index)
        self.last_index.set_function(last_index)
        self.pending.labels("write").set_function(pending_writes)
        self.pending.labels("read").set_function(pending_reads)
        for r in Role:
            self.role.labels(r.value).set_function(lambda r=r: float(role() is r))  # type: ignore[misc]

    def bind_storage(self, stats: StorageStats) -> None:
        """Export the storage's disk trouble counters (read at scrape time)."""
        self.registry.register(_StorageCollector(stats))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


_STALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _MaxHistogram:
    """A histogram of durations plus a gauge NAME_max: the longest one observed since start
    (a stall is one long observation, which the buckets alone locate only roughly)."""

    def __init__(self, name: str, doc: str, registry: CollectorRegistry) -> None:
        self._hist = Histogram(name, doc, buckets=_STALL_BUCKETS, registry=registry)
        self._gauge = Gauge(f"{name}_max", f"Longest since start: {doc}", registry=registry)
        self.max = 0.0

    def observe(self, seconds: float) -> None:
        self._hist.observe(seconds)
        if seconds > self.max:
            self.max = seconds
            self._gauge.set(seconds)


class _StorageCollector(Collector):
    """Counters kept by the storage itself (StorageStats), exported as they are."""

    _EXPORTED = (
        ("snapshot_failures", "Snapshot files that could not be written (the log is kept)"),
        ("allocation_failures", "WAL segment space that could not be reserved (disk full)"),
        ("room_refusals", "Writes refused (507) and appends dropped for lack of disk space"),
    )

    def __init__(self, stats: StorageStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[CounterMetricFamily]:
        for name, doc in self._EXPORTED:
            yield CounterMetricFamily(f"raftkv_storage_{name}", doc, getattr(self._stats, name))
