"""How a node listens for HTTP: plain or TLS, fast path or not, always under a connection guard
(whose budgets admission.py assigns).

The fast path (fasthttp.py) stays on with TLS and authentication: it runs over the SSL
transport like any asyncio protocol, checks the caller with the same `check_access` as the
aiohttp middleware, and hands anything it would refuse to aiohttp, which answers 401 / 403.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable

from aiohttp import web

from raftkv.runtime.conn_guard import Budget, ConnectionGuard, GuardedSite
from raftkv.runtime.fasthttp import FastSite
from raftkv.runtime.http_api import HttpApi
from raftkv.runtime.node import RaftRuntime
from raftkv.runtime.settings import NodeSettings
from raftkv.security.tls import http_client_context, http_server_context

log = logging.getLogger("raftkv.server")


def make_site(
    runner: web.AppRunner, api: HttpApi, node: RaftRuntime, settings: NodeSettings
) -> web.TCPSite:
    security = settings.security
    if security.tokens is not None and security.tls is None:
        log.warning(
            "%s: bearer tokens without TLS travel in clear text (use --tls-dir)", settings.node_id
        )
    ctx = http_server_context(security.tls) if security.tls is not None else None
    guard = ConnectionGuard(security, api.peers.node_of_cert)
    for budget in Budget:
        api.node_metrics.http_connections.labels(budget.value).set_function(
            _count_of(guard, budget)
        )
    host, port = settings.http
    if settings.fast_http:
        return FastSite(runner, api, node, settings, host, port, ssl_context=ctx, guard=guard)
    return GuardedSite(runner, host, port, guard, ctx)


def _count_of(guard: ConnectionGuard, budget: Budget) -> Callable[[], float]:
    return lambda: float(guard.count(budget))


def forwarder_ssl(settings: NodeSettings) -> ssl.SSLContext | None:
    """What the follower->leader forwarder speaks: verify the leader against the cluster CA
    and present this node's own certificate (the leader trusts forwarded identities only
    from node certificates)."""
    tls = settings.security.tls
    if tls is None:
        return None
    return http_client_context(tls.ca, tls.cert, tls.key)


def url_scheme(settings: NodeSettings) -> str:
    return "https" if settings.security.tls is not None else "http"
