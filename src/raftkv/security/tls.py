"""ssl contexts for raftkv, all built on Python's ssl module, TLS 1.2 at least.

    peer_server / peer_client   mutual TLS between nodes: both sides present a node
                                certificate of the cluster CA and verify the other's
    http_server                 HTTPS; a client certificate of the CA is optional (verified
                                when sent), the other way to authenticate is a bearer token
    http_client                 what clients and the forwarder use: verify the server against
                                a CA file (or the system store), optionally present a cert

After the TLS handshake the peer's certificate is read with cert_identity: CN and OU.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raftkv.errors import BadRequest, PeerError
from raftkv.security.auth import CertIdentity

CA_CERT = "ca.pem"  # the layout of `raftkv certs init` (certs.py)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A node's certificate and key, and the cluster CA that signs every member."""

    cert: Path
    key: Path
    ca: Path

    @classmethod
    def from_dir(cls, directory: Path, node_id: str) -> TlsFiles:
        """The layout of `raftkv certs init`: DIR/<id>.pem, DIR/<id>.key, DIR/ca.pem."""
        return cls(directory / f"{node_id}.pem", directory / f"{node_id}.key", directory / CA_CERT)

    def check(self) -> None:
        """BadRequest naming the file when one cannot be read or the pair does not load."""
        for what, path in (("certificate", self.cert), ("key", self.key), ("CA", self.ca)):
            if not path.is_file():
                raise BadRequest(f"TLS {what} file {path} does not exist")
        peer_server_context(self)


def _base(purpose: ssl.Purpose) -> ssl.SSLContext:
    server = purpose is ssl.Purpose.CLIENT_AUTH
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _load(ctx: ssl.SSLContext, cert: Path | None, key: Path | None, ca: Path | None) -> None:
    try:
        if cert is not None:
            ctx.load_cert_chain(cert, key)
        if ca is not None:
            ctx.load_verify_locations(cafile=ca)
    except (OSError, ssl.SSLError) as e:
        raise BadRequest(f"cannot load TLS files ({cert}, {key}, {ca}): {e}") from None


def peer_server_context(files: TlsFiles) -> ssl.SSLContext:
    ctx = _base(ssl.Purpose.CLIENT_AUTH)
    _load(ctx, files.cert, files.key, files.ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def peer_client_context(files: TlsFiles) -> ssl.SSLContext:
    ctx = _base(ssl.Purpose.SERVER_AUTH)
    _load(ctx, files.cert, files.key, files.ca)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def http_server_context(files: TlsFiles) -> ssl.SSLContext:
    ctx = _base(ssl.Purpose.CLIENT_AUTH)
    _load(ctx, files.cert, files.key, files.ca)
    ctx.verify_mode = ssl.CERT_OPTIONAL  # a client cert is one way to authenticate
    return ctx


def http_client_context(
    ca: Path | None = None, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    """Verify servers against ca (None: the system's trust store); present cert if given."""
    if key is not None and cert is None:
        raise BadRequest("a client key needs its certificate too")
    ctx = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(ctx, cert, key, None)
    return ctx


def cert_identity(peercert: Any) -> CertIdentity | None:
    """CN and OU of a verified peer certificate (ssl's getpeercert() dict); None if absent."""
    if not isinstance(peercert, dict):
        return None
    fields: dict[str, str] = {}
    for rdn in peercert.get("subject", ()):
        for pair in rdn:
            if isinstance(pair, tuple) and len(pair) == 2:
                fields.setdefault(str(pair[0]), str(pair[1]))
    name = fields.get("commonName")
    if not name:
        return None
    return CertIdentity(name, fields.get("organizationalUnitName", ""))


def check_node_cert(peercert: Any, node_id: str) -> None:
    """PeerError unless the verified certificate is node node_id's (CN=node_id, OU=node)."""
    ident = cert_identity(peercert)
    if ident is None:
        raise PeerError(f"peer claiming to be {node_id!r} presented no certificate")
    if not ident.is_node:
        raise PeerError(
            f"peer claiming to be {node_id!r} presented a certificate for {ident.name!r} "
            f"with OU={ident.unit!r}, not a node certificate"
        )
    if ident.name != node_id:
        raise PeerError(
            f"peer claiming to be {node_id!r} presented the certificate of node {ident.name!r}"
        )
