"""What one node enforces against its callers and peers: TLS, authentication and limits.

Defaults keep a plain dev node exactly as before (no TLS, no authentication) but always bound
connections and time: at most max_http_connections client HTTP connections, max_streams SSE
streams (watches, event streams) and max_peer_connections inbound peer (Raft) connections at
once; an HTTP connection that sends nothing for idle_timeout_s between requests, or takes more
than read_timeout_s to send a request head or body, is closed, and so is a stream whose client
takes no data for idle_timeout_s; a peer must finish its TLS and raftkv handshakes within
handshake_timeout_s. (Requests forwarded by peers and /healthz have budgets of their own:
runtime/admission.py.)

Authentication is on when a token table is given or TLS is on (then every request needs a
token or a client certificate, nothing is anonymous).
"""

from __future__ import annotations

from dataclasses import dataclass

from raftkv.errors import BadRequest
from raftkv.security.auth import TokenTable
from raftkv.security.tls import TlsFiles


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    tls: TlsFiles | None = None
    tokens: TokenTable | None = None
    max_http_connections: int = 1024
    max_streams: int = 1024
    max_peer_connections: int = 64
    idle_timeout_s: float = 60.0
    read_timeout_s: float = 15.0
    handshake_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if min(self.max_http_connections, self.max_streams, self.max_peer_connections) < 1:
            raise BadRequest("connection limits must be >= 1")
        for name in ("idle_timeout_s", "read_timeout_s", "handshake_timeout_s"):
            if not getattr(self, name) > 0:
                raise BadRequest(f"{name} must be > 0")

    @property
    def auth_required(self) -> bool:
        return self.tls is not None or self.tokens is not None
