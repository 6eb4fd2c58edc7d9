"""Every setting of `raftkv serve`, once: ServeConfig's fields are the table that the flags,
the TOML file, the environment, `--print-config` and the launchers' command lines all read.

The naming rule, for a setting `data_dir`: flag `--data-dir`, environment variable
`RAFTKV_DATA_DIR`, TOML key `data_dir`. Hidden settings (tests only) are flags alone.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raftkv.client.endpoints import parse_endpoints
from raftkv.kv.limits import MAX_KEY_SIZE, MAX_VALUE_SIZE
from raftkv.nodeconfig.kinds import Bool, FilePath, Float, Int, Kind, ListOf, Text
from raftkv.runtime.settings import (
    MAX_WAL_SEGMENT_MB,
    MIN_WAL_SEGMENT_MB,
    NodeSettings,
    check_id,
    parse_hostport,
    parse_peers,
)
from raftkv.security.config import SecurityConfig
from raftkv.wire import DEFAULT_MAX_FRAME_SIZE

ENV_PREFIX = "RAFTKV_"


class Group(enum.Enum):
    """Where a setting appears in `raftkv serve --help`."""

    NODE = "node"
    TIMING = "timing and storage"
    SECURITY = "security (TLS and authentication are off unless asked for)"
    LIMITS = "limits"


@dataclass(frozen=True, slots=True)
class Meta:
    kind: Kind
    help: str
    metavar: str | None
    group: Group
    hidden: bool  # tests only: a flag, not in --help, the file or the environment


@dataclass(frozen=True, slots=True)
class Option:
    """One setting: its name, its kind, its default (required: no default) and its help."""

    name: str
    meta: Meta
    default: Any  # dataclasses.MISSING when required

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def key(self) -> str:
        """The TOML key."""
        return self.name

    @property
    def kind(self) -> Kind:
        return self.meta.kind


def _meta(
    kind: Kind,
    help: str,
    *,
    metavar: str | None = None,
    group: Group = Group.NODE,
    hidden: bool = False,
) -> dict[str, Meta]:
    return {"setting": Meta(kind, help, metavar, group, hidden)}


def _node_default(name: str) -> Any:
    """NodeSettings' own default for a field: the node and the CLI never disagree."""
    return NodeSettings.__dataclass_fields__[name].default


_SEC = SecurityConfig()


def _node_id(text: str) -> None:
    check_id(text, "node id")


def _cluster_id(text: str) -> None:
    check_id(text, "cluster id")


def _peer(text: str) -> None:
    parse_peers(text)


def _url(text: str) -> None:
    parse_endpoints(text)


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """What `raftkv serve` runs with (node_settings() turns it into NodeSettings)."""

    id: str = field(metadata=_meta(Text(_node_id), "this node's id, e.g. n1"))
    data_dir: Path = field(
        metadata=_meta(FilePath(), "where this node keeps its data", metavar="DIR")
    )
    listen: str = field(
        metadata=_meta(
            Text(lambda t: parse_hostport(t, "address")), "Raft peer address", metavar="HOST:PORT"
        )
    )
    http: str = field(
        metadata=_meta(
            Text(lambda t: parse_hostport(t, "address")), "HTTP API address", metavar="HOST:PORT"
        )
    )
    peers: tuple[str, ...] = field(
        default=(),
        metadata=_meta(
            ListOf(_peer),
            "every member, this node included, e.g. n1=127.0.0.1:7001@http://127.0.0.1:8001,n2=... "
            "(default: this node alone)",
            metavar="ID=HOST:PORT@HTTP,...",
        ),
    )
    cluster_id: str = field(
        default=_node_default("cluster_id"),
        metadata=_meta(Text(_cluster_id), "refuse peers of another cluster"),
    )
    join: tuple[str, ...] = field(
        default=(),
        metadata=_meta(
            ListOf(_url),
            "join a running cluster (comma-separated HTTP URLs of its nodes) as a learner: a new, "
            "empty --data-dir only; ignored once the node has joined",
            metavar="URLS",
        ),
    )
    allow_fault_injection: bool = field(
        default=False,
        metadata=_meta(Bool(), "enable POST /v1/debug/net (demo and chaos tests only)"),
    )
    tick_ms: float = field(
        default=_node_default("tick_ms"),
        metadata=_meta(
            Float(),
            "Raft tick in milliseconds",
            metavar="MS",
            group=Group.TIMING,
        ),
    )
    election_ticks: int = field(
        default=_node_default("election_ticks"),
        metadata=_meta(
            Int(2),
            "election timeout in ticks",
            metavar="N",
            group=Group.TIMING,
        ),
    )
    slow: float = field(
        default=_node_default("slow"),
        metadata=_meta(
            Float(1.0, 1000.0),
            "slow-motion factor: ticks and message delays times this (the demo)",
            metavar="FACTOR",
            group=Group.TIMING,
        ),
    )
    request_timeout: float = field(
        default=_node_default("request_timeout_s"),
        metadata=_meta(
            Float(),
            "answer 504 after S seconds",
            metavar="S",
            group=Group.TIMING,
        ),
    )
    snapshot_entries: int = field(
        default=_node_default("snapshot_entries"),
        metadata=_meta(
            Int(0),
            "snapshot the store and compact the log once N entries were applied since the last "
            "snapshot (0: never snapshot, the log grows without bound)",
            metavar="N",
            group=Group.TIMING,
        ),
    )
    snapshot_bytes: int = field(
        default=_node_default("snapshot_bytes"),
        metadata=_meta(
            Int(0),
            "... or once the entries applied since the last snapshot hold B bytes",
            metavar="B",
            group=Group.TIMING,
        ),
    )
    snapshot_log_ratio: float = field(
        default=_node_default("snapshot_log_ratio"),
        metadata=_meta(
            Float(0.0),
            "... and, for a store over 4 MiB, only once those entries hold R times what the "
            "last snapshot has beyond 4 MiB, so a large store is not rewritten every N entries "
            "(0: by N and B alone)",
            metavar="R",
            group=Group.TIMING,
        ),
    )
    wal_segment_mb: int = field(
        default=_node_default("wal_segment_mb"),
        metadata=_meta(
            Int(MIN_WAL_SEGMENT_MB, MAX_WAL_SEGMENT_MB, "MiB"),
            "WAL segment size in MiB, reserved whole on disk (a new node needs N MiB free to "
            "start, so use less on a small volume)",
            metavar="N",
            group=Group.TIMING,
        ),
    )
    tls_dir: Path | None = field(
        default=None,
        metadata=_meta(
            FilePath(),
            "TLS for peers (mutual) and HTTP with DIR/<id>.pem, DIR/<id>.key, DIR/ca.pem "
            "(from `raftkv certs init`); turns authentication on",
            metavar="DIR",
            group=Group.SECURITY,
        ),
    )
    cert: Path | None = field(
        default=None,
        metadata=_meta(
            FilePath(),
            "this node's certificate (PEM)",
            metavar="FILE",
            group=Group.SECURITY,
        ),
    )
    key: Path | None = field(
        default=None,
        metadata=_meta(FilePath(), "its private key (PEM)", metavar="FILE", group=Group.SECURITY),
    )
    ca: Path | None = field(
        default=None,
        metadata=_meta(
            FilePath(),
            "the cluster CA certificate (PEM)",
            metavar="FILE",
            group=Group.SECURITY,
        ),
    )
    auth_tokens: Path | None = field(
        default=None,
        metadata=_meta(
            FilePath(),
            'bearer tokens, lines of "TOKEN ROLE NAME"; turns authentication on',
            metavar="FILE",
            group=Group.SECURITY,
        ),
    )
    max_connections: int = field(
        default=_SEC.max_http_connections,
        metadata=_meta(
            Int(1),
            "client HTTP connections at once; SSE streams, requests forwarded by peers and "
            "/healthz do not count",
            metavar="N",
            group=Group.LIMITS,
        ),
    )
    max_streams: int = field(
        default=_SEC.max_streams,
        metadata=_meta(
            Int(1),
            "SSE streams at once: GET /v1/watch and /v1/events",
            metavar="N",
            group=Group.LIMITS,
        ),
    )
    max_peer_connections: int = field(
        default=_SEC.max_peer_connections,
        metadata=_meta(
            Int(1),
            "inbound peer (Raft) connections at once",
            metavar="N",
            group=Group.LIMITS,
        ),
    )
    idle_timeout: float = field(
        default=_SEC.idle_timeout_s,
        metadata=_meta(
            Float(),
            "close an HTTP connection idle for S seconds",
            metavar="S",
            group=Group.LIMITS,
        ),
    )
    read_timeout: float = field(
        default=_SEC.read_timeout_s,
        metadata=_meta(
            Float(),
            "close a connection whose request takes over S seconds to arrive",
            metavar="S",
            group=Group.LIMITS,
        ),
    )
    handshake_timeout: float = field(
        default=_SEC.handshake_timeout_s,
        metadata=_meta(
            Float(),
            "a peer must finish its TLS and raftkv handshakes within S seconds",
            metavar="S",
            group=Group.LIMITS,
        ),
    )
    max_key_size: int = field(
        default=MAX_KEY_SIZE,
        metadata=_meta(
            Int(1, MAX_KEY_SIZE),
            "largest key",
            metavar="BYTES",
            group=Group.LIMITS,
        ),
    )
    max_value_size: int = field(
        default=MAX_VALUE_SIZE,
        metadata=_meta(
            Int(0, MAX_VALUE_SIZE),
            "largest value",
            metavar="BYTES",
            group=Group.LIMITS,
        ),
    )
    max_frame_size: int = field(
        default=DEFAULT_MAX_FRAME_SIZE,
        metadata=_meta(
            Int(1, 0xFFFF_FFFF),
            "largest peer frame payload",
            metavar="BYTES",
            group=Group.LIMITS,
        ),
    )
    fsync: bool = field(
        default=True, metadata=_meta(Bool(), "fsync the log (tests turn it off)", hidden=True)
    )


OPTIONS: tuple[Option, ...] = tuple(
    Option(f.name, f.metadata["setting"], f.default) for f in dataclasses.fields(ServeConfig)
)
BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}
