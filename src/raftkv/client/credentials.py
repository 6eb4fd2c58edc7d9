"""How a client proves who it is and which servers it trusts: a bearer token and/or TLS files.

    Credentials(token=..., ca=Path("ca.pem"), cert=Path("client.pem"), key=Path("client.key"))

Unset fields come from the environment (Credentials.from_env), like RAFTKV_ENDPOINTS:

    RAFTKV_TOKEN        a bearer token (or RAFTKV_TOKEN_FILE: a file whose first line is one)
    RAFTKV_CACERT       the CA file that signs the servers' certificates (https endpoints)
    RAFTKV_CLIENT_CERT  a client certificate (PEM), and RAFTKV_CLIENT_KEY its key

https endpoints are verified against the CA file, or the system's trust store without one.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from raftkv.errors import BadRequest
from raftkv.security.tls import http_client_context

TOKEN_ENV = "RAFTKV_TOKEN"
TOKEN_FILE_ENV = "RAFTKV_TOKEN_FILE"
CACERT_ENV = "RAFTKV_CACERT"
CLIENT_CERT_ENV = "RAFTKV_CLIENT_CERT"
CLIENT_KEY_ENV = "RAFTKV_CLIENT_KEY"


@dataclass(frozen=True, slots=True)
class Credentials:
    token: str | None = None
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def __post_init__(self) -> None:
        if self.token is not None and (not self.token or any(c in self.token for c in "\r\n ")):
            raise BadRequest("a token must be non-empty, without spaces or line breaks")
        if self.key is not None and self.cert is None:
            raise BadRequest("a client key needs its client certificate too")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Credentials:
        env = os.environ if env is None else env
        token = env.get(TOKEN_ENV, "").strip() or None
        token_file = env.get(TOKEN_FILE_ENV, "").strip()
        if token is None and token_file:
            token = read_token_file(Path(token_file))

        def path(name: str) -> Path | None:
            value = env.get(name, "").strip()
            return Path(value) if value else None

        return cls(token, path(CACERT_ENV), path(CLIENT_CERT_ENV), path(CLIENT_KEY_ENV))

    def merged(self, other: Credentials) -> Credentials:
        """self, with unset fields taken from other."""
        return Credentials(
            self.token if self.token is not None else other.token,
            self.ca or other.ca,
            self.cert or other.cert,
            self.key or other.key if self.cert is None else self.key,
        )

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def ssl_context(self) -> ssl.SSLContext | None:
        """The context for https endpoints; None: aiohttp's default (the system store)."""
        if self.ca is None and self.cert is None:
            return None
        return http_client_context(self.ca, self.cert, self.key)


def read_token_file(path: Path) -> str:
    """The first word of the first line that is not blank or a #-comment."""
    try:
        text = path.read_text()
    except OSError as e:
        raise BadRequest(f"cannot read the token file {path}: {e.strerror or e}") from None
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            return words[0]
    raise BadRequest(f"the token file {path} holds no token")
