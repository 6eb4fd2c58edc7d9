"""End to end with TLS: `raftkv certs init`, three `raftkv serve` processes with mutual TLS
between peers and token authentication, the CLI over https with a token or a client certificate;
no token gets 401 (on the leader too), a peer certificate from another CA is
refused, oversized input gets 413."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from raftkv.security.tls import TlsFiles, peer_client_context
from raftkv.wire import FrameDecoder, Handshake, encode_handshake

from .harness import free_base_port, raftkv

pytestmark = pytest.mark.timeout(120)


@dataclass
class TlsCluster:
    certs: Path
    urls: dict[str, str]
    raft_ports: dict[str, int]
    procs: dict[str, subprocess.Popen[bytes]]
    tokens: dict[str, str]  # role -> token

    @property
    def endpoints(self) -> str:
        return ",".join(self.urls.values())

    def env(self, role: str | None = "write") -> dict[str, str]:
        env = {"RAFTKV_ENDPOINTS": self.endpoints, "RAFTKV_CACERT": str(self.certs / "ca.pem")}
        env["RAFTKV_TOKEN"] = self.tokens[role] if role else ""
        return env

    def https(
        self, method: str, url: str, body: bytes | None = None, token: str | None = None
    ) -> tuple[int, bytes]:
        ctx = ssl.create_default_context(cafile=str(self.certs / "ca.pem"))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        req = urllib.request.Request(url, data=body, method=method, headers=headers)
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx)
        )
        try:
            with opener.open(req, timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def leader(self, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for nid, url in self.urls.items():
                with contextlib.suppress(OSError):
                    status, body = self.https("GET", url + "/v1/status", token=self.tokens["read"])
                    if status == 200 and json.loads(body)["role"] == "leader":
                        return nid
            time.sleep(0.1)
        raise AssertionError("no leader")


def _tokens(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            token, role, _ = line.split()
            out[role] = token
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsCluster]:
    root = tmp_path_factory.mktemp("tls")
    certs = root / "certs"
    r = raftkv("certs", "init", "--dir", str(certs), "--nodes", "3")
    assert r.returncode == 0, r.stderr
    base = free_base_port(3)
    ids = ["n1", "n2", "n3"]
    urls = {n: f"https://127.0.0.1:{base + 1000 + i}" for i, n in enumerate(ids)}
    raft = {n: base + i for i, n in enumerate(ids)}
    peers = ",".join(f"{n}=127.0.0.1:{raft[n]}@{urls[n]}" for n in ids)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for i, nid in enumerate(ids):
            log = (root / f"{nid}.log").open("wb")
            procs[nid] = subprocess.Popen(
                [
                    sys.executable, "-m", "raftkv.cli", "serve", "--id", nid,
                    "--data-dir", str(root / nid), "--listen", f"127.0.0.1:{raft[nid]}",
                    "--http", f"127.0.0.1:{base + 1000 + i}", "--peers", peers,
                    "--cluster-id", "secure", "--tls-dir", str(certs),
                    "--auth-tokens", str(certs / "tokens.txt"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        c = TlsCluster(certs, urls, raft, procs, _tokens(certs / "tokens.txt"))
        c.leader()
        yield c
    finally:
        for proc in procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def test_cli_with_a_token_over_https(cluster: TlsCluster) -> None:
    r = raftkv("put", "x", "99", env=cluster.env("write"))
    assert r.returncode == 0, r.stderr
    r = raftkv("get", "x", env=cluster.env("read"))
    assert (r.returncode, r.stdout) == (0, "99\n"), r.stderr
    r = raftkv("status", "--json", env=cluster.env("read"))
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and doc["leader"] in {n["status"]["id"] for n in doc["nodes"]}


def test_bench_runs_against_a_tls_cluster(cluster: TlsCluster) -> None:
    r = raftkv(
        "bench", "--op", "put", "--clients", "4", "--duration", "1", "--json",
        env=cluster.env("write"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ops"] > 0 and doc["errors"] == 0, doc


def test_a_client_certificate_is_a_credential(cluster: TlsCluster) -> None:
    c = cluster.certs
    args = [
        "--client-cert",
        str(c / "client-admin.pem"),
        "--client-key",
        str(c / "client-admin.key"),
    ]
    r = raftkv("put", "by-cert", "1", *args, env=cluster.env(None))
    assert r.returncode == 0, r.stderr
    r = raftkv("leader", "transfer", *args, env=cluster.env(None))
    assert r.returncode == 0, r.stderr


def test_no_token_gets_401_and_a_read_token_cannot_write(cluster: TlsCluster) -> None:
    r = raftkv("put", "y", "1", env=cluster.env(None))
    assert r.returncode == 1 and "authentication required" in r.stderr, r.stderr
    r = raftkv("put", "y", "1", env=cluster.env("read"))
    assert r.returncode == 1 and "needs role write" in r.stderr, r.stderr
    leader = cluster.leader()
    for nid, url in cluster.urls.items():  # the leader and the followers alike
        status, body = cluster.https("PUT", url + "/v1/kv/y", b"1")
        assert status == 401, (nid, nid == leader, body)
        assert json.loads(body)["error"] == "unauthorized"
        status, _ = cluster.https("GET", url + "/v1/kv/x")
        assert status == 401
    status, _ = cluster.https(
        "GET", cluster.urls[leader] + "/v1/kv/y", token=cluster.tokens["read"]
    )
    assert status == 404


def test_oversized_value_gets_413(cluster: TlsCluster) -> None:
    leader = cluster.leader()
    status, body = cluster.https(
        "PUT",
        cluster.urls[leader] + "/v1/kv/big",
        b"v" * (1024 * 1024 + 1),
        cluster.tokens["write"],
    )
    assert status == 413 and json.loads(body)["error"] == "too_large"


def test_a_peer_with_a_certificate_from_another_ca_is_refused(
    cluster: TlsCluster, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    r = raftkv("certs", "init", "--dir", str(other), "--nodes", "n1,n2,n3")
    assert r.returncode == 0, r.stderr
    leader = cluster.leader()
    sender = next(n for n in cluster.urls if n != leader)

    async def attempt(files: TlsFiles) -> bool:
        """Whether the leader answers a raftkv handshake over TLS with these files."""
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1",
                cluster.raft_ports[leader],
                ssl=peer_client_context(files),
                server_hostname="127.0.0.1",
            )
        except (ssl.SSLError, OSError):
            return False
        try:
            writer.write(encode_handshake("secure", sender))
            decoder = FrameDecoder()
            while True:
                data = await asyncio.wait_for(reader.read(65536), 5)
                if not data:
                    return False
                frames = decoder.feed(data)
                if frames:
                    return isinstance(frames[0], Handshake)
        except (ssl.SSLError, OSError):
            return False
        finally:
            writer.close()

    real = cluster.certs
    assert asyncio.run(attempt(TlsFiles.from_dir(real, sender)))  # the control
    foreign = TlsFiles(other / f"{sender}.pem", other / f"{sender}.key", real / "ca.pem")
    assert not asyncio.run(attempt(foreign))
    # ... and the cluster is unharmed.
    r = raftkv("put", "after", "1", env=cluster.env("write"))
    assert r.returncode == 0, r.stderr
    assert all(p.poll() is None for p in cluster.procs.values())
