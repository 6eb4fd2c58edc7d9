"""Who is calling, and may they (pure: no IO but TokenTable.load).

Roles are ordered: read < write < admin; a role allows everything a lower one does.

    read   GET /v1/kv, /v1/watch, /v1/status, /v1/members, /v1/events, /metrics, /healthz
    write  PUT|DELETE /v1/kv, POST /v1/txn (a txn may write, so it needs write)
    admin  POST|DELETE /v1/members..., /v1/leader/..., /v1/debug/... (membership, faults),
           GET /v1/snapshot (a backup of the whole store)

A request a follower forwards to the leader (POST /v1/internal/OP, runtime/forward.py) needs
the role of what it asks for: read-index and members read, propose write, the rest admin.

A caller proves who it is with a bearer token (Authorization: Bearer TOKEN, looked up in the
node's token table) or, over TLS, with a client certificate of the cluster CA whose OU is a
role. A node certificate (OU=node) carries no role of its own: a follower forwarding a request
for a certificate-authenticated caller names that caller in FORWARDED_IDENTITY_HEADER, and that
header is honoured only on a connection whose client certificate is a node certificate of the
cluster CA. A forwarded token is checked again by the leader, like any token.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from raftkv.errors import BadRequest, Forbidden, Unauthorized

FORWARDED_IDENTITY_HEADER = "X-Raftkv-Identity"
NODE_UNIT = "node"


class AccessRole(enum.IntEnum):
    READ = 1
    WRITE = 2
    ADMIN = 3

    @classmethod
    def parse(cls, text: str) -> AccessRole:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise BadRequest(f"unknown role {text!r}: use read, write or admin") from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    role: AccessRole
    via: str  # "token", "certificate", or "forwarded by <node>"


@dataclass(frozen=True, slots=True)
class CertIdentity:
    """The subject of a verified TLS peer certificate: CN and OU."""

    name: str
    unit: str

    @property
    def is_node(self) -> bool:
        return self.unit == NODE_UNIT


@dataclass(frozen=True, slots=True)
class TokenTable:
    """Bearer tokens, kept only as SHA-256 digests: digest -> identity."""

    by_digest: Mapping[bytes, Identity] = field(default_factory=lambda: MappingProxyType({}))

    def __len__(self) -> int:
        return len(self.by_digest)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.by_digest)))

    @classmethod
    def parse(cls, text: str, where: str = "tokens") -> TokenTable:
        """Lines of "TOKEN ROLE [NAME]"; blank lines and #-comments are skipped."""
        table: dict[bytes, Identity] = {}
        for number, raw in enumerate(text.splitlines(), 1):
            parts = raw.split("#", 1)[0].split()
            if not parts:
                continue
            if len(parts) not in (2, 3):
                raise BadRequest(f"{where}:{number}: expected TOKEN ROLE [NAME]")
            token, role_text = parts[0], parts[1]
            if len(token) < 16:
                raise BadRequest(f"{where}:{number}: a token must be at least 16 characters")
            name = parts[2] if len(parts) == 3 else f"token-{number}"
            digest = _digest(token)
            if digest in table:
                raise BadRequest(f"{where}:{number}: this token is listed twice")
            try:
                role = AccessRole.parse(role_text)
            except BadRequest as e:
                raise BadRequest(f"{where}:{number}: {e}") from None
            table[digest] = Identity(name, role, "token")
        if not table:
            raise BadRequest(f"{where} lists no tokens")
        return cls(MappingProxyType(table))

    @classmethod
    def load(cls, path: Path) -> TokenTable:
        try:
            text = path.read_text()
        except OSError as e:
            raise BadRequest(f"cannot read the token file {path}: {e.strerror or e}") from None
        return cls.parse(text, str(path))

    def lookup(self, token: str) -> Identity | None:
        return self.by_digest.get(_digest(token))


def required_role(method: str, path: str) -> AccessRole:
    """The least role that may make this request (unknown routes need read, then 404)."""
    if path.startswith("/v1/internal/"):
        op = path[len("/v1/internal/") :]
        if op in ("read-index", "members"):
            return AccessRole.READ
        return AccessRole.WRITE if op == "propose" else AccessRole.ADMIN
    if path.startswith(("/v1/debug/", "/v1/leader/")) or path in ("/v1/debug", "/v1/snapshot"):
        return AccessRole.ADMIN
    if path.startswith("/v1/members") and method not in ("GET", "HEAD"):
        return AccessRole.ADMIN
    if path.startswith("/v1/kv/") and method not in ("GET", "HEAD"):
        return AccessRole.WRITE
    if path in ("/v1/txn", "/v1/sessions"):  # a session is opened by a log entry
        return AccessRole.WRITE
    return AccessRole.READ


def bearer_token(authorization: str) -> str:
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("the Authorization header must be 'Bearer TOKEN'")
    return token


def authenticate(
    tokens: TokenTable | None,
    authorization: str | None,
    peer: CertIdentity | None,
    forwarded: str | None,
) -> Identity:
    """The caller's identity, or Unauthorized. Precedence: a bearer token, then a node
    certificate with a forwarded identity, then a client certificate."""
    if authorization is not None:
        token = bearer_token(authorization)
        if tokens is None:
            raise Unauthorized("this node accepts no bearer tokens (it has no token file)")
        found = tokens.lookup(token)
        if found is None:
            raise Unauthorized("unknown bearer token")
        return found
    if peer is not None and peer.is_node:
        if forwarded is None:
            raise Unauthorized(
                f"a node certificate ({peer.name}) carries no client role: "
                "send a bearer token or use a client certificate"
            )
        return parse_forwarded(forwarded, peer.name)
    if peer is not None:
        try:
            role = AccessRole.parse(peer.unit)
        except BadRequest:
            raise Unauthorized(
                f"the client certificate of {peer.name!r} has OU={peer.unit!r}, not a role "
                "(read, write or admin)"
            ) from None
        return Identity(peer.name, role, "certificate")
    raise Unauthorized(
        "authentication required: send 'Authorization: Bearer TOKEN' or a client certificate"
    )


def authorize(identity: Identity, needed: AccessRole) -> None:
    if identity.role < needed:
        raise Forbidden(
            f"{identity.name} (role {identity.role.label}, by {identity.via}) may not do this: "
            f"it needs role {needed.label}"
        )


def forwarded_value(identity: Identity) -> str:
    return f"{identity.role.label} {identity.name}"


def parse_forwarded(value: str, node: str) -> Identity:
    role_text, _, name = value.strip().partition(" ")
    role: AccessRole | None
    try:
        role = AccessRole.parse(role_text)
    except BadRequest:
        role = None
    if role is None or not name.strip():
        raise Unauthorized(f"malformed {FORWARDED_IDENTITY_HEADER} header from node {node}")
    return Identity(name.strip(), role, f"forwarded by {node}")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
