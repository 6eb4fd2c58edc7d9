"""How one node is configured: identity, addresses, peers, timing and limits.

Every field is validated on construction, so a NodeSettings that exists is usable; mistakes
raise BadRequest with a message naming the field (the CLI prints it as is).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from raftkv.driver.compaction import SnapshotPolicy
from raftkv.errors import BadRequest
from raftkv.kv.limits import MAX_KEY_SIZE, MAX_VALUE_SIZE
from raftkv.security.config import SecurityConfig
from raftkv.storage import DEFAULT_SEGMENT_BYTES, LogStorage, Recovered
from raftkv.wire import DEFAULT_MAX_FRAME_SIZE

HostPort = tuple[str, int]
DEFAULT_WAL_SEGMENT_MB = DEFAULT_SEGMENT_BYTES // (1024 * 1024)  # 64
MIN_WAL_SEGMENT_MB = 1
MAX_WAL_SEGMENT_MB = 1024


@dataclass(frozen=True, slots=True)
class PeerAddress:
    """Where a member listens: Raft traffic on raft_host:raft_port, clients on http_url."""

    raft_host: str
    raft_port: int
    http_url: str  # base URL without a trailing slash, e.g. http://127.0.0.1:8001

    @property
    def raft(self) -> HostPort:
        return (self.raft_host, self.raft_port)


@dataclass(frozen=True, slots=True)
class NodeSettings:
    node_id: str
    data_dir: Path
    listen: HostPort  # Raft peer traffic
    http: HostPort  # the HTTP API
    peers: Mapping[str, PeerAddress] = field(default_factory=dict)  # every member, self included
    cluster_id: str = "raftkv"
    allow_fault_injection: bool = False
    tick_ms: float = 50.0
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    # Demo slow motion: tick_ms is multiplied by slow and every peer message is delayed by
    # (slow - 1) * tick_ms / 2, so a human can follow the messages (1.0 = normal speed).
    slow: float = 1.0
    request_timeout_s: float = 5.0
    max_key_size: int = MAX_KEY_SIZE
    max_value_size: int = MAX_VALUE_SIZE
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    peer_queue_size: int = 4096  # messages queued per peer before the oldest are dropped
    fsync: bool = True  # False skips every fsync: for tests that do not test durability
    # Log compaction (raftkv.driver.compaction): snapshot once snapshot_entries entries (0:
    # never snapshot) or snapshot_bytes of them were applied since the last snapshot, and
    # they hold snapshot_log_ratio times that snapshot's size.
    snapshot_entries: int = 10_000
    snapshot_bytes: int = 64 * 1024 * 1024
    snapshot_log_ratio: float = 1.0
    # WAL segment size: each segment's space is reserved (preallocated) whole, so a new node
    # needs this much free space to start. Smaller suits small volumes (docs/storage.md).
    wal_segment_mb: int = DEFAULT_WAL_SEGMENT_MB
    security: SecurityConfig = field(default_factory=SecurityConfig)  # TLS, auth, limits

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))  # accept a str too
        check_id(self.node_id, "node id")
        check_id(self.cluster_id, "cluster id")
        _check_hostport(self.listen, "listen")
        _check_hostport(self.http, "http")
        if self.node_id not in self.peers:
            raise BadRequest(f"--peers must include this node ({self.node_id!r})")
        for peer_id, addr in self.peers.items():
            check_id(peer_id, "peer id")
            _check_hostport(addr.raft, f"peer {peer_id} raft address")
            _check_url(addr.http_url, f"peer {peer_id} http url")
        if self.security.tls is not None:
            plain = [p for p, a in self.peers.items() if not a.http_url.startswith("https://")]
            if plain:
                raise BadRequest(f"with TLS on, the HTTP URLs of {plain} must be https://")
        if not self.tick_ms > 0:
            raise BadRequest(f"tick_ms must be > 0, got {self.tick_ms}")
        if self.heartbeat_ticks < 1 or self.election_ticks <= self.heartbeat_ticks:
            raise BadRequest("need heartbeat_ticks >= 1 and election_ticks > heartbeat_ticks")
        if not 1.0 <= self.slow <= 1000.0:
            raise BadRequest(f"slow must be in [1, 1000], got {self.slow}")
        if not self.request_timeout_s > 0:
            raise BadRequest(f"request_timeout_s must be > 0, got {self.request_timeout_s}")
        if not 0 < self.max_key_size <= MAX_KEY_SIZE:
            raise BadRequest(f"max_key_size must be in 1..{MAX_KEY_SIZE}")
        if not 0 <= self.max_value_size <= MAX_VALUE_SIZE:
            raise BadRequest(f"max_value_size must be in 0..{MAX_VALUE_SIZE}")
        if self.peer_queue_size < 1:
            raise BadRequest("peer_queue_size must be >= 1")
        self.snapshot_policy.validate()
        check_wal_segment_mb(self.wal_segment_mb)

    @property
    def snapshot_policy(self) -> SnapshotPolicy:
        return SnapshotPolicy(self.snapshot_entries, self.snapshot_bytes, self.snapshot_log_ratio)

    @property
    def tick_seconds(self) -> float:
        return self.tick_ms * self.slow / 1000.0

    @property
    def message_delay_seconds(self) -> float:
        """Extra delivery delay of every peer message in slow motion (0 at normal speed)."""
        return (self.slow - 1.0) * self.tick_ms / 2000.0

    @property
    def election_timeout_seconds(self) -> float:
        """The shortest election timeout (it is randomized up to twice this)."""
        return self.election_ticks * self.tick_seconds

    @property
    def voters(self) -> tuple[str, ...]:
        return tuple(sorted(self.peers))

    @property
    def http_url(self) -> str:
        return self.peers[self.node_id].http_url

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "raft"

    @property
    def wal_segment_bytes(self) -> int:
        return self.wal_segment_mb * 1024 * 1024


def open_storage(settings: NodeSettings) -> tuple[LogStorage, Recovered]:
    """The node's log, opened (and recovered) as its settings say."""
    return LogStorage.open(
        settings.storage_dir,
        node_id=settings.node_id,
        segment_bytes=settings.wal_segment_bytes,
        sync=settings.fsync,
    )


def check_wal_segment_mb(value: int) -> None:
    if not MIN_WAL_SEGMENT_MB <= value <= MAX_WAL_SEGMENT_MB:
        raise BadRequest(
            f"wal_segment_mb (--wal-segment-mb) must be in {MIN_WAL_SEGMENT_MB}.."
            f"{MAX_WAL_SEGMENT_MB} (MiB), got {value}"
        )


def parse_hostport(text: str, what: str = "address") -> HostPort:
    """'HOST:PORT' or '[IPv6]:PORT' -> (host, port)."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host:
        raise BadRequest(f"{what} {text!r} must look like HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise BadRequest(f"{what} {text!r} has a non-numeric port") from None
    _check_hostport((host, port), what)
    return host, port


def parse_peers(text: str) -> dict[str, PeerAddress]:
    """'n1=127.0.0.1:7001@http://127.0.0.1:8001,n2=...' -> {id: PeerAddress}."""
    peers: dict[str, PeerAddress] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        peer_id, eq, rest = item.partition("=")
        raft, at, http_url = rest.partition("@")
        if not eq or not at:
            raise BadRequest(f"peer {item!r} must look like ID=HOST:PORT@http://HOST:PORT")
        peer_id = peer_id.strip()
        check_id(peer_id, "peer id")
        if peer_id in peers:
            raise BadRequest(f"peer {peer_id!r} is listed twice")
        host, port = parse_hostport(raft, f"peer {peer_id} raft address")
        http_url = http_url.strip().rstrip("/")
        _check_url(http_url, f"peer {peer_id} http url")
        peers[peer_id] = PeerAddress(host, port, http_url)
    if not peers:
        raise BadRequest("--peers lists no peers")
    return peers


def check_id(value: str, what: str) -> None:
    if not value or len(value) > 64 or not all(c.isalnum() or c in "-_." for c in value):
        raise BadRequest(f"{what} {value!r} must be 1-64 characters of letters, digits, - _ .")


def _check_hostport(hp: HostPort, what: str) -> None:
    host, port = hp
    if not host:
        raise BadRequest(f"{what} has an empty host")
    if not 0 <= port <= 65535:
        raise BadRequest(f"{what} port {port} is out of range 0..65535")


def _check_url(url: str, what: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadRequest(f"{what} {url!r} must be an http:// or https:// URL")
