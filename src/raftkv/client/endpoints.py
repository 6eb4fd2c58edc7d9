"""Endpoint lists: where a client sends requests.

Resolution order: an explicit list, then $RAFTKV_ENDPOINTS (comma-separated HTTP base URLs).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from urllib.parse import urlsplit

from raftkv.errors import BadRequest

ENV_VAR = "RAFTKV_ENDPOINTS"


def parse_endpoints(spec: str | Iterable[str]) -> list[str]:
    """'http://a:1,http://b:2' (or a list) -> normalized base URLs, without duplicates."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for raw in items:
        url = raw.strip().rstrip("/")
        if not url:
            continue
        if "://" not in url:
            url = "http://" + url  # accept HOST:PORT for convenience
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadRequest(f"endpoint {raw.strip()!r} is not an http:// URL")
        try:
            _ = parts.port
        except ValueError:
            raise BadRequest(f"endpoint {raw.strip()!r} has an invalid port") from None
        if parts.path not in ("", "/") or parts.query:
            raise BadRequest(f"endpoint {raw.strip()!r} must be a base URL like http://HOST:PORT")
        if url not in out:
            out.append(url)
    if not out:
        raise BadRequest("the endpoint list is empty")
    return out


def resolve_endpoints(explicit: str | Iterable[str] | None = None) -> list[str]:
    """The explicit endpoints, else $RAFTKV_ENDPOINTS; BadRequest when neither is set."""
    if explicit is not None:
        return parse_endpoints(explicit)
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return parse_endpoints(env)
    raise BadRequest(
        f"no endpoints: pass --endpoints or set {ENV_VAR} "
        "(`raftkv cluster up` prints the export line)"
    )
