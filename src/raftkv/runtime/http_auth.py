"""Authentication and authorization of every HTTP request (http_server.py asks once the
request's head is in): 401 unauthorized (with WWW-Authenticate: Bearer), 403 forbidden, as
JSON like every other error. The request-body deadline (408) is the server's (http_server.py).
"""

from __future__ import annotations

from typing import Any

from raftkv.security.auth import Identity, authenticate, authorize, required_role
from raftkv.security.config import SecurityConfig
from raftkv.security.tls import cert_identity


def check_access(
    config: SecurityConfig,
    method: str,
    path: str,
    authorization: str | None,
    peercert: Any,
    forwarded: str | None,
) -> Identity | None:
    """The caller allowed to make this request (None when auth is off); raises
    Unauthorized / Forbidden."""
    if not config.auth_required:
        return None
    peer = cert_identity(peercert) if config.tls is not None else None
    identity = authenticate(config.tokens, authorization, peer, forwarded)
    authorize(identity, required_role(method, path))
    return identity
