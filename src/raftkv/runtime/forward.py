"""Followers forward requests that need the leader to the leader's HTTP URL.

A forwarded request carries HOP_HEADER; a node that receives one but is not the leader
answers 503 no_leader instead of forwarding again, so requests never loop. The leader's
answer is passed back as is (status, body, and the raftkv headers).

The leader serves forwarded requests from a connection budget of their own, not the clients'
(admission.py): it knows them by this node's certificate with TLS, else by HOP_HEADER naming
a member and, with tokens on, PEER_KEY_HEADER carrying the key derived from the token table.
A follower holds at most FORWARD_POOL connections to the leader.

With authentication on, the leader does not take the follower's word blindly: a bearer token
is passed on as is and checked again by the leader; a caller known by its client certificate
is named in X-Raftkv-Identity, which the leader honours only because the forwarder connects
with this node's own certificate (OU=node, same cluster CA) over TLS (see security/auth.py).
"""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
from aiohttp import web

from raftkv.client.http import client_session
from raftkv.runtime.http_auth import identity_of
from raftkv.runtime.http_errors import error_response
from raftkv.security.auth import FORWARDED_IDENTITY_HEADER, forwarded_value

HOP_HEADER = "X-Raftkv-Forwarded-By"
PEER_KEY_HEADER = "X-Raftkv-Peer-Key"
FORWARD_POOL = 512  # connections a follower may hold to the leader (the leader allows as many)
LEADER_HEADER = "X-Raftkv-Leader"
_PASS_TO_LEADER = (
    "Content-Type",
    "Authorization",
    "X-Raftkv-Client",
    "X-Raftkv-Seq",
    "X-Raftkv-Ack",
)
_PASS_BACK = ("Content-Type", "Retry-After", "X-Raftkv-Revision", "X-Raftkv-Duplicate")


class Forwarder:
    def __init__(
        self,
        node_id: str,
        timeout_s: float,
        ssl_context: ssl.SSLContext | None = None,
        peer_key: str | None = None,
    ) -> None:
        self._node_id = node_id
        self._timeout = timeout_s
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._peer_key = peer_key
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = client_session(
                connector=aiohttp.TCPConnector(
                    limit=FORWARD_POOL, keepalive_timeout=30, ssl=self._ssl
                ),
                auto_decompress=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def forward(
        self, request: web.Request, body: bytes, leader: str, base_url: str, *, write: bool
    ) -> web.Response:
        headers = {h: v for h in _PASS_TO_LEADER if (v := request.headers.get(h)) is not None}
        headers[HOP_HEADER] = self._node_id
        if self._peer_key is not None:
            headers[PEER_KEY_HEADER] = self._peer_key
        identity = identity_of(request)
        if identity is not None and identity.via != "token":
            headers[FORWARDED_IDENTITY_HEADER] = forwarded_value(identity)
        url = base_url + request.rel_url.raw_path_qs
        unknown = "the write's outcome is unknown" if write else "no write was involved"
        try:
            async with self._client().request(
                request.method,
                url,
                data=body if body else None,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                allow_redirects=False,
            ) as resp:
                payload = await resp.read()
                back = {h: v for h in _PASS_BACK if (v := resp.headers.get(h)) is not None}
                back[LEADER_HEADER] = leader
                return web.Response(body=payload, status=resp.status, headers=back)
        except aiohttp.ClientConnectorError as e:
            # Never connected, so nothing was sent: safe to retry.
            return error_response(
                503,
                "no_leader",
                f"leader {leader} is unreachable at {base_url}: {e.os_error}",
                retry=True,
                leader=leader,
            )
        except TimeoutError:
            return error_response(
                504, "timeout", f"leader {leader} did not answer in {self._timeout:g}s; {unknown}"
            )
        except (aiohttp.ClientError, asyncio.IncompleteReadError) as e:
            return error_response(
                502,
                "forward_failed",
                f"connection to leader {leader} failed mid-request ({e}); {unknown}",
            )
