"""The one way raftkv opens an HTTP client session.

aiohttp silently resends an idempotent request (PUT, DELETE) once on a new connection when a
reused keep-alive connection breaks. For a replicated write that resend is wrong twice over: the
first copy may already have reached the node (and committed), and when the node is gone the resend
fails to connect, which reads as "never sent". raftkv decides retries itself, with sessions that
make a retried write apply once, so the resend is switched off here.
"""

from __future__ import annotations

from typing import Any

import aiohttp


def client_session(**kwargs: Any) -> aiohttp.ClientSession:
    """An aiohttp session that never resends a request on its own."""
    session = aiohttp.ClientSession(**kwargs)
    # aiohttp has no public switch for this; the attribute exists since 3.9 (checked in tests).
    session._retry_connection = False
    return session
