"""The pure parts: certificates made by certs.py, identities, tokens, roles, credentials."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from raftkv.cli import main
from raftkv.client.credentials import Credentials
from raftkv.errors import BadRequest, Forbidden, PeerError, Unauthorized
from raftkv.security import certs
from raftkv.security.auth import (
    AccessRole,
    CertIdentity,
    Identity,
    TokenTable,
    authenticate,
    authorize,
    forwarded_value,
    required_role,
)
from raftkv.security.config import SecurityConfig
from raftkv.security.tls import TlsFiles, cert_identity, check_node_cert


def test_init_dir_writes_a_ca_node_and_client_certificates(tmp_path: Path) -> None:
    d = tmp_path / "certs"
    written = certs.init_dir(d, ["n1", "n2"], clients={"ops": "admin", "app": "write"})
    names = {p.name for p in written}
    assert names == {
        "ca.pem", "ca.key", "n1.pem", "n1.key", "n2.pem", "n2.key",
        "client-ops.pem", "client-ops.key", "client-app.pem", "client-app.key", "tokens.txt",
    }  # fmt: skip
    for p in written:
        mode = stat.S_IMODE(p.stat().st_mode)
        private = p.suffix == ".key" or p.name == "tokens.txt"
        assert mode == (0o600 if private else 0o644), p
    assert certs.describe((d / "n1.pem").read_bytes())[:2] == ("n1", "node")
    assert certs.describe((d / "client-app.pem").read_bytes())[:2] == ("app", "write")
    issuer = certs.describe((d / "ca.pem").read_bytes())[0]
    assert certs.describe((d / "n2.pem").read_bytes())[2] == issuer
    table = TokenTable.load(d / "tokens.txt")
    assert sorted(i.role.label for i in table.by_digest.values()) == ["admin", "read", "write"]
    TlsFiles.from_dir(d, "n1").check()  # loads as a server and client context
    with pytest.raises(BadRequest, match="already holds"):
        certs.init_dir(d, ["n1"])
    certs.init_dir(d, ["n1"], force=True)
    extra = certs.issue_client(d, "viewer", "read")
    assert certs.describe(extra[0].read_bytes())[:2] == ("viewer", "read")


def test_init_dir_refuses_bad_names_and_roles(tmp_path: Path) -> None:
    with pytest.raises(BadRequest):
        certs.init_dir(tmp_path, ["bad id"])
    with pytest.raises(BadRequest):
        certs.init_dir(tmp_path, ["ca"])
    with pytest.raises(BadRequest):
        certs.init_dir(tmp_path, ["n1"], clients={"x": "root"})
    with pytest.raises(BadRequest):
        TlsFiles.from_dir(tmp_path, "n1").check()


def test_certs_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "c"
    assert main(["certs", "init", "--dir", str(d), "--nodes", "2", "--user", "me=read"]) == 0
    assert (d / "n2.pem").exists() and (d / "client-me.pem").exists()
    assert main(["certs", "client", "bot", "--role", "write", "--dir", str(d)]) == 0
    assert certs.describe((d / "client-bot.pem").read_bytes())[:2] == ("bot", "write")
    assert main(["certs", "init", "--dir", str(d)]) == 1  # nothing is overwritten
    assert "already holds" in capsys.readouterr().err


def test_serve_refuses_an_incomplete_tls_setup(tmp_path: Path) -> None:
    base = ["serve", "--id", "n1", "--data-dir", str(tmp_path / "d")]
    base += ["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"]
    assert main([*base, "--cert", str(tmp_path / "x.pem")]) == 2
    assert main([*base, "--tls-dir", str(tmp_path / "none")]) == 2
    certs.init_dir(tmp_path / "c", ["n1"])
    # With TLS the peer URLs must be https.
    plain = "n1=127.0.0.1:7001@http://127.0.0.1:8001"
    assert main([*base, "--tls-dir", str(tmp_path / "c"), "--peers", plain]) == 2


def test_cert_identity_and_node_checks() -> None:
    peercert = {
        "subject": (
            (("organizationName", "raftkv"),),
            (("organizationalUnitName", "node"),),
            (("commonName", "n2"),),
        )
    }
    assert cert_identity(peercert) == CertIdentity("n2", "node")
    assert cert_identity(None) is None and cert_identity({}) is None
    check_node_cert(peercert, "n2")
    with pytest.raises(PeerError, match="certificate of node 'n2'"):
        check_node_cert(peercert, "n3")
    client = {"subject": ((("organizationalUnitName", "admin"),), (("commonName", "n3"),))}
    with pytest.raises(PeerError, match="not a node certificate"):
        check_node_cert(client, "n3")
    with pytest.raises(PeerError, match="no certificate"):
        check_node_cert(None, "n3")


def test_token_table_parsing() -> None:
    table = TokenTable.parse("# comment\n\nabcdefghijklmnop read alice\nqrstuvwxyz012345 admin\n")
    assert table.lookup("abcdefghijklmnop") == Identity("alice", AccessRole.READ, "token")
    found = table.lookup("qrstuvwxyz012345")
    assert found is not None and found.role is AccessRole.ADMIN
    assert table.lookup("nope") is None
    for bad in ("short read", "abcdefghijklmnop root", "x" * 20 + " read a b", "", "# only"):
        with pytest.raises(BadRequest):
            TokenTable.parse(bad)
    with pytest.raises(BadRequest, match="twice"):
        TokenTable.parse("abcdefghijklmnop read\nabcdefghijklmnop write\n")


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [
        ("GET", "/v1/kv/a", AccessRole.READ),
        ("PUT", "/v1/kv/a", AccessRole.WRITE),
        ("DELETE", "/v1/kv/a", AccessRole.WRITE),
        ("POST", "/v1/txn", AccessRole.WRITE),
        ("POST", "/v1/sessions", AccessRole.WRITE),  # a log entry
        ("GET", "/v1/watch", AccessRole.READ),
        ("GET", "/v1/status", AccessRole.READ),
        ("GET", "/v1/members", AccessRole.READ),
        ("POST", "/v1/members", AccessRole.ADMIN),
        ("DELETE", "/v1/members/n2", AccessRole.ADMIN),
        ("POST", "/v1/members/n2/promote", AccessRole.ADMIN),
        ("POST", "/v1/leader/transfer", AccessRole.ADMIN),
        ("GET", "/v1/debug/net", AccessRole.ADMIN),
        ("POST", "/v1/debug/net", AccessRole.ADMIN),
        ("GET", "/v1/snapshot", AccessRole.ADMIN),
        ("GET", "/metrics", AccessRole.READ),
        ("GET", "/healthz", AccessRole.READ),
        ("GET", "/nowhere", AccessRole.READ),
    ],
)
def test_required_roles(method: str, path: str, role: AccessRole) -> None:
    assert required_role(method, path) is role


def test_authenticate_precedence_and_forwarding() -> None:
    table = TokenTable.parse("abcdefghijklmnop write app\n")
    node = CertIdentity("n2", "node")
    reader = CertIdentity("viewer", "read")
    assert authenticate(table, "Bearer abcdefghijklmnop", reader, None).name == "app"
    with pytest.raises(Unauthorized, match="unknown"):
        authenticate(table, "Bearer wrong", reader, None)
    with pytest.raises(Unauthorized, match="Bearer TOKEN"):
        authenticate(table, "Basic abc", None, None)
    with pytest.raises(Unauthorized, match="no bearer tokens"):
        authenticate(None, "Bearer abcdefghijklmnop", None, None)
    assert authenticate(table, None, reader, None) == Identity(
        "viewer", AccessRole.READ, "certificate"
    )
    # Only a node certificate may name a forwarded caller; a client's claim is ignored.
    admin = Identity("ops", AccessRole.ADMIN, "certificate")
    got = authenticate(table, None, node, forwarded_value(admin))
    assert (got.name, got.role, got.via) == ("ops", AccessRole.ADMIN, "forwarded by n2")
    assert authenticate(table, None, reader, forwarded_value(admin)).role is AccessRole.READ
    with pytest.raises(Unauthorized, match="carries no client role"):
        authenticate(table, None, node, None)
    with pytest.raises(Unauthorized, match="malformed"):
        authenticate(table, None, node, "superuser x")
    with pytest.raises(Unauthorized, match="not a role"):
        authenticate(table, None, CertIdentity("x", "node2"), None)
    with pytest.raises(Unauthorized, match="authentication required"):
        authenticate(table, None, None, None)
    authorize(Identity("a", AccessRole.ADMIN, "token"), AccessRole.WRITE)
    with pytest.raises(Forbidden, match="needs role admin"):
        authorize(Identity("a", AccessRole.WRITE, "token"), AccessRole.ADMIN)


def test_security_config_defaults_and_checks() -> None:
    assert not SecurityConfig().auth_required
    assert SecurityConfig(tokens=TokenTable.parse("abcdefghijklmnop read")).auth_required
    with pytest.raises(BadRequest):
        SecurityConfig(max_http_connections=0)
    with pytest.raises(BadRequest):
        SecurityConfig(read_timeout_s=0)


def test_client_credentials_from_env(tmp_path: Path) -> None:
    token_file = tmp_path / "t"
    token_file.write_text("# mine\nsecret-token-123 read me\n")
    env = {
        "RAFTKV_TOKEN_FILE": str(token_file),
        "RAFTKV_CACERT": "/ca.pem",
        "RAFTKV_CLIENT_CERT": "/c.pem",
        "RAFTKV_CLIENT_KEY": "/c.key",
    }
    creds = Credentials.from_env(env)
    assert creds == Credentials("secret-token-123", Path("/ca.pem"), Path("/c.pem"), Path("/c.key"))
    assert creds.headers() == {"Authorization": "Bearer secret-token-123"}
    assert Credentials.from_env({"RAFTKV_TOKEN": "direct"}).token == "direct"
    assert Credentials.from_env({}) == Credentials()
    assert Credentials().ssl_context() is None and Credentials().headers() == {}
    assert Credentials(token="mine").merged(creds).token == "mine"
    with pytest.raises(BadRequest):
        Credentials(token="two words")
    with pytest.raises(BadRequest):
        Credentials(key=Path("/k"))
