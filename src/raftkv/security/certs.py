"""A cluster CA and the certificates it signs, made with `cryptography` (no openssl binary).

Every certificate names who holds it in its subject: CN = the node id or client name, OU = what
it may do: "node" for a cluster member (mutual TLS between peers, and the forwarder's client
certificate), or a client role "read" | "write" | "admin". Keys are ECDSA P-256.

Layout written by `init_dir` (what `raftkv serve --tls-dir DIR --id ID` reads):

    DIR/ca.pem  DIR/ca.key                 the cluster CA (keep ca.key offline in production)
    DIR/<id>.pem  DIR/<id>.key             one per node: serverAuth + clientAuth, SANs = hosts
    DIR/client-<name>.pem  .key            client certificates (clientAuth), OU = role
    DIR/tokens.txt                         bearer tokens, one "TOKEN ROLE NAME" per line

Private keys are written 0600; nothing is ever overwritten unless force is set.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from raftkv.errors import BadRequest
from raftkv.security.tls import CA_CERT

NODE_UNIT = "node"
CLIENT_ROLES = ("read", "write", "admin")
CA_KEY, TOKENS_FILE = "ca.key", "tokens.txt"
DEFAULT_HOSTS = ("127.0.0.1", "localhost", "::1")
DEFAULT_DAYS = 825
_BACKDATE = datetime.timedelta(minutes=5)  # tolerate small clock differences between hosts


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes


def make_ca(name: str, *, days: int = DEFAULT_DAYS) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "raftkv"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(_cert_pem(cert), _key_pem(key))


def issue(
    ca: Issued,
    common_name: str,
    unit: str,
    *,
    hosts: Sequence[str] = (),
    server: bool = False,
    days: int = DEFAULT_DAYS,
) -> Issued:
    """A certificate for common_name with OU=unit, signed by ca. server: also serverAuth, with
    the hosts (DNS names or IP addresses) and common_name as subject alternative names."""
    if unit not in (NODE_UNIT, *CLIENT_ROLES):
        raise BadRequest(f"unit must be {NODE_UNIT!r} or a role {CLIENT_ROLES}, got {unit!r}")
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise BadRequest("the CA key is not an EC key made by raftkv certs")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "raftkv"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if server:
        names = _alt_names([*hosts, common_name])
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return Issued(_cert_pem(cert), _key_pem(key))


def init_dir(
    directory: Path,
    nodes: Sequence[str],
    *,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    clients: Mapping[str, str] | None = None,
    tokens: bool = True,
    days: int = DEFAULT_DAYS,
    force: bool = False,
) -> list[Path]:
    """Make a CA and a certificate per node (and per client: name -> role) in directory, plus
    a tokens file with one admin, one write and one read token. The paths written."""
    clients = dict(clients if clients is not None else {"admin": "admin"})
    for node in nodes:
        _check_name(node, "node id")
    for name, role in clients.items():
        _check_name(name, "client name")
        if role not in CLIENT_ROLES:
            raise BadRequest(f"client {name!r}: role must be one of {', '.join(CLIENT_ROLES)}")
    if not nodes:
        raise BadRequest("name at least one node")
    plan: dict[str, bytes] = {}
    ca = make_ca(f"raftkv cluster CA {secrets.token_hex(4)}", days=days)
    plan[CA_CERT], plan[CA_KEY] = ca.cert_pem, ca.key_pem
    for node in nodes:
        got = issue(ca, node, NODE_UNIT, hosts=hosts, server=True, days=days)
        plan[f"{node}.pem"], plan[f"{node}.key"] = got.cert_pem, got.key_pem
    for name, role in clients.items():
        got = issue(ca, name, role, days=days)
        plan[f"client-{name}.pem"], plan[f"client-{name}.key"] = got.cert_pem, got.key_pem
    if tokens:
        plan[TOKENS_FILE] = token_file_text(
            [(secrets.token_urlsafe(24), role, f"{role}-token") for role in reversed(CLIENT_ROLES)]
        ).encode()
    if not force:
        existing = [name for name in plan if (directory / name).exists()]
        if existing:
            raise BadRequest(
                f"{directory} already holds {', '.join(sorted(existing))}: "
                "choose another directory, or pass --force to replace them"
            )
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in plan.items():
        private = name.endswith(".key") or name == TOKENS_FILE
        written.append(write_file(directory / name, data, private=private))
    return written


def issue_client(directory: Path, name: str, role: str, *, days: int = DEFAULT_DAYS) -> list[Path]:
    """One more client certificate, signed by the CA in directory."""
    _check_name(name, "client name")
    if role not in CLIENT_ROLES:
        raise BadRequest(f"role must be one of {', '.join(CLIENT_ROLES)}")
    try:
        ca = Issued((directory / CA_CERT).read_bytes(), (directory / CA_KEY).read_bytes())
    except FileNotFoundError as e:
        raise BadRequest(f"no CA in {directory} ({e.filename}): run `raftkv certs init`") from None
    got = issue(ca, name, role, days=days)
    cert, key = directory / f"client-{name}.pem", directory / f"client-{name}.key"
    if cert.exists() or key.exists():
        raise BadRequest(f"{cert} already exists")
    return [write_file(cert, got.cert_pem), write_file(key, got.key_pem, private=True)]


def token_file_text(rows: Sequence[tuple[str, str, str]]) -> str:
    lines = ["# raftkv bearer tokens: TOKEN ROLE NAME (role: read | write | admin)"]
    lines += [f"{token} {role} {name}" for token, role, name in rows]
    return "\n".join(lines) + "\n"


def write_file(path: Path, data: bytes, *, private: bool = False) -> Path:
    """Write data to path via a tmp file; private files are created 0600 (never readable by
    others, not even for a moment)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def describe(cert_pem: bytes) -> tuple[str, str, str]:
    """(common name, OU, issuer common name) of a PEM certificate."""
    cert = x509.load_pem_x509_certificate(cert_pem)

    def attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
        found = name.get_attributes_for_oid(oid)
        value = found[0].value if found else ""
        return value.decode() if isinstance(value, bytes) else value

    return (
        attr(cert.subject, NameOID.COMMON_NAME),
        attr(cert.subject, NameOID.ORGANIZATIONAL_UNIT_NAME),
        attr(cert.issuer, NameOID.COMMON_NAME),
    )


def _alt_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for host in dict.fromkeys(h.strip() for h in hosts if h.strip()):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            out.append(x509.DNSName(host))
    return out


def _check_name(value: str, what: str) -> None:
    if not value or len(value) > 64 or not all(c.isalnum() or c in "-_." for c in value):
        raise BadRequest(f"{what} {value!r} must be 1-64 characters of letters, digits, - _ .")
    if value in ("ca", "tokens") or value.startswith("client-"):
        raise BadRequest(f"{what} {value!r} is reserved")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
