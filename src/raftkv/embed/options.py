"""How an embedded node is configured, and how that maps onto the server's NodeSettings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from raftkv.errors import BadRequest
from raftkv.kv.sessions import SessionLimits
from raftkv.runtime.settings import (
    DEFAULT_WAL_SEGMENT_MB,
    NodeSettings,
    PeerAddress,
    check_wal_segment_mb,
    parse_peers,
)


@dataclass(frozen=True, slots=True)
class NodeOptions:
    """Tunables of an embedded node. Defaults suit a LAN; tests use shorter ticks."""

    tick_ms: float = 50.0
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    fsync: bool = True  # False: no fsync at all (tests that do not test durability)
    forward: bool = True  # followers forward apply/read to the leader (else: NotLeader)
    apply_timeout_s: float = 10.0  # default deadline of apply() and read(), retries included
    attempt_timeout_s: float = 3.0  # one attempt; then it is retried (exactly once: sessions)
    # Snapshot once snapshot_every entries were applied since the last snapshot (0: never
    # compact) and they hold snapshot_log_ratio times that snapshot's size (0: by count only).
    snapshot_every: int = 10_000
    snapshot_log_ratio: float = 1.0
    wal_segment_mb: int = DEFAULT_WAL_SEGMENT_MB  # reserved whole on disk: less on small volumes
    sessions: SessionLimits = field(default_factory=SessionLimits)
    peer_queue_size: int = 4096

    def __post_init__(self) -> None:
        if not self.apply_timeout_s > 0 or not self.attempt_timeout_s > 0:
            raise BadRequest("apply_timeout_s and attempt_timeout_s must be > 0")
        if self.snapshot_every < 0 or self.snapshot_log_ratio < 0:
            raise BadRequest("snapshot_every and snapshot_log_ratio must be >= 0")
        check_wal_segment_mb(self.wal_segment_mb)
        s = self.sessions
        if min(s.max_sessions, s.ttl_entries, s.max_results) < 1:
            raise BadRequest("session limits must be >= 1")


def peer_address(spec: str | PeerAddress, peer_id: str) -> PeerAddress:
    """'HOST:RAFT_PORT@http://HOST:API_PORT' (as `raftkv serve --peers`), or a PeerAddress."""
    if isinstance(spec, PeerAddress):
        return spec
    return parse_peers(f"{peer_id}={spec}")[peer_id]


def build_settings(
    node_id: str,
    peers: Mapping[str, str | PeerAddress],
    data_dir: str | Path,
    cluster_id: str,
    options: NodeOptions,
) -> NodeSettings:
    addresses = {pid: peer_address(spec, pid) for pid, spec in peers.items()}
    me = addresses.get(node_id)
    if me is None:
        raise BadRequest(f"peers must include this node ({node_id!r})")
    api = urlsplit(me.http_url)
    if api.hostname is None or api.port is None:
        raise BadRequest(f"peer {node_id} api url {me.http_url!r} needs a host and a port")
    return NodeSettings(
        node_id=node_id,
        data_dir=Path(data_dir),
        listen=me.raft,
        http=(api.hostname, api.port),
        peers=addresses,
        cluster_id=cluster_id,
        tick_ms=options.tick_ms,
        election_ticks=options.election_ticks,
        heartbeat_ticks=options.heartbeat_ticks,
        request_timeout_s=options.attempt_timeout_s,
        peer_queue_size=options.peer_queue_size,
        fsync=options.fsync,
        wal_segment_mb=options.wal_segment_mb,
    )
