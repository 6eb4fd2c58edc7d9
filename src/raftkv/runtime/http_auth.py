"""Authentication, authorization and the request-body deadline, in front of every HTTP handler.

`access_middleware` runs inside the JSON error middleware, so refusals are JSON like every
other error: 401 unauthorized (with WWW-Authenticate: Bearer), 403 forbidden, 408 when a body
does not arrive within read_timeout_s, 413 for one over the size limit. The fast path
(fasthttp.py) calls `check_access` with the same inputs and hands anything it refuses to
aiohttp, so both paths answer identically.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from raftkv.runtime.http_errors import error_response
from raftkv.security.auth import (
    FORWARDED_IDENTITY_HEADER,
    Identity,
    authenticate,
    authorize,
    required_role,
)
from raftkv.security.config import SecurityConfig
from raftkv.security.tls import cert_identity

IDENTITY_KEY = web.RequestKey("raftkv.identity", Identity)  # the caller, when auth is on
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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


def access_middleware(config: SecurityConfig) -> Middleware:
    @web.middleware
    async def access(request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        peercert = transport.get_extra_info("peercert") if transport is not None else None
        identity = check_access(
            config,
            request.method,
            request.path,
            request.headers.get("Authorization"),
            peercert,
            request.headers.get(FORWARDED_IDENTITY_HEADER),
        )
        if identity is not None:
            request[IDENTITY_KEY] = identity
        if request.can_read_body:
            try:
                async with asyncio.timeout(config.read_timeout_s):
                    await request.read()  # cached: the handler's read() returns it at once
            except TimeoutError:
                resp = error_response(
                    408,
                    "request_timeout",
                    f"the request body did not arrive within {config.read_timeout_s:g}s",
                )
                resp.force_close()
                return resp
        return await handler(request)

    return access


def identity_of(request: web.Request) -> Identity | None:
    return request.get(IDENTITY_KEY)
