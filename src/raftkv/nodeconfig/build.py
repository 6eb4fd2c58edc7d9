"""ServeConfig -> NodeSettings: the one place where a node's settings are mapped to the
runtime's (and its security settings to SecurityConfig)."""

from __future__ import annotations

from raftkv.errors import BadRequest
from raftkv.nodeconfig.options import ServeConfig
from raftkv.runtime.settings import NodeSettings, parse_hostport, parse_peers
from raftkv.security.auth import TokenTable
from raftkv.security.config import SecurityConfig
from raftkv.security.tls import TlsFiles


def node_settings(cfg: ServeConfig) -> NodeSettings:
    """BadRequest for settings that do not fit together (or TLS/token files that do not load)."""
    if cfg.join and cfg.peers:
        raise BadRequest("join and peers exclude each other: a joining node learns its peers")
    scheme = "https" if cfg.tls_dir or cfg.cert else "http"
    peers_spec = ",".join(cfg.peers) or f"{cfg.id}={cfg.listen}@{scheme}://{cfg.http}"
    return NodeSettings(
        node_id=cfg.id,
        data_dir=cfg.data_dir,
        listen=parse_hostport(cfg.listen, "listen"),
        http=parse_hostport(cfg.http, "http"),
        peers=parse_peers(peers_spec),
        cluster_id=cfg.cluster_id,
        allow_fault_injection=cfg.allow_fault_injection,
        tick_ms=cfg.tick_ms,
        election_ticks=cfg.election_ticks,
        slow=cfg.slow,
        request_timeout_s=cfg.request_timeout,
        fsync=cfg.fsync,
        snapshot_entries=cfg.snapshot_entries,
        snapshot_bytes=cfg.snapshot_bytes,
        snapshot_log_ratio=cfg.snapshot_log_ratio,
        wal_segment_mb=cfg.wal_segment_mb,
        max_key_size=cfg.max_key_size,
        max_value_size=cfg.max_value_size,
        max_frame_size=cfg.max_frame_size,
        security=security_config(cfg),
    )


def security_config(cfg: ServeConfig) -> SecurityConfig:
    """TLS files (cert/key/ca, or the layout of tls_dir), tokens and connection limits."""
    tls: TlsFiles | None = None
    explicit = (cfg.cert, cfg.key, cfg.ca)
    if any(explicit):
        if cfg.cert is None or cfg.key is None or cfg.ca is None:
            raise BadRequest("--cert, --key and --ca go together")
        tls = TlsFiles(cfg.cert, cfg.key, cfg.ca)
    elif cfg.tls_dir is not None:
        tls = TlsFiles.from_dir(cfg.tls_dir, cfg.id)
    if tls is not None:
        tls.check()
    tokens = TokenTable.load(cfg.auth_tokens) if cfg.auth_tokens is not None else None
    return SecurityConfig(
        tls=tls,
        tokens=tokens,
        max_http_connections=cfg.max_connections,
        max_streams=cfg.max_streams,
        max_peer_connections=cfg.max_peer_connections,
        idle_timeout_s=cfg.idle_timeout,
        read_timeout_s=cfg.read_timeout,
        handshake_timeout_s=cfg.handshake_timeout,
    )
