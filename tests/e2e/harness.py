"""Real clusters for the end-to-end tests: `raftkv cluster up` in a tmp dir on free ports,
real processes, real fsync; `cluster down` always runs when the test ends."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raftkv.devcluster import process
from raftkv.devcluster.process import running_pid
from raftkv.devcluster.topology import HTTP_OFFSET, Topology, load_topology, save_topology
from raftkv.nodeconfig import serve_command, serve_env

CLI_TIMEOUT_S = 60.0
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def raftkv(
    *args: str, env: dict[str, str] | None = None, timeout: float = CLI_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """Run the `raftkv` command (as `python -m raftkv.cli`) and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "raftkv.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def free_base_port(nodes: int) -> int:
    """A base port P such that P.. and P+HTTP_OFFSET.. (nodes each) are free right now."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 30000)
        ports = [base + i for i in range(nodes)] + [base + HTTP_OFFSET + i for i in range(nodes)]
        if all(_bindable(p) for p in ports):
            return base
    raise RuntimeError("no free port range found")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> Response:
    """One raw HTTP request, no retries (to observe exactly what one node answers)."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with _opener.open(req, timeout=timeout) as resp:
            return Response(resp.status, dict(resp.headers), resp.read())
    except urllib.error.HTTPError as e:
        return Response(e.code, dict(e.headers), e.read())


@dataclass
class Cluster:
    data_dir: Path
    topology: Topology

    @property
    def endpoints(self) -> list[str]:
        return self.topology.endpoints

    @property
    def env(self) -> dict[str, str]:
        return {"RAFTKV_ENDPOINTS": ",".join(self.endpoints)}

    def url(self, node_id: str) -> str:
        return next(n.http_url for n in self.topology.nodes if n.id == node_id)

    def pid(self, node_id: str) -> int:
        return int((self.data_dir / node_id / "node.pid").read_text())

    def status(self, node_id: str, timeout: float = 1.0) -> dict[str, Any] | None:
        try:
            r = http("GET", self.url(node_id) + "/v1/status", timeout=timeout)
        except OSError:
            return None
        return r.json() if r.status == 200 else None

    def leader(self, among: list[str] | None = None, timeout: float = 15.0) -> str:
        """The id of the node that says it leads (among the given nodes), waiting for one."""
        ids = among or [n.id for n in self.topology.nodes]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node_id in ids:
                st = self.status(node_id, timeout=0.5)
                if st is not None and st["role"] == "leader":
                    return node_id
            time.sleep(0.05)
        raise AssertionError(f"no leader among {ids} within {timeout}s")

    def kill9(self, node_id: str) -> None:
        pid = self.pid(node_id)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.02)

    def up(self, *extra: str) -> subprocess.CompletedProcess[str]:
        r = raftkv("cluster", "up", "--data-dir", str(self.data_dir), *extra)
        assert r.returncode == 0, f"cluster up failed:\n{r.stdout}\n{r.stderr}"
        return r

    def down(self) -> subprocess.CompletedProcess[str]:
        return raftkv("cluster", "down", "--data-dir", str(self.data_dir))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


@contextlib.contextmanager
def running_cluster(
    tmp: Path, nodes: int = 3, fault_injection: bool = False, extra: tuple[str, ...] = ()
) -> Iterator[Cluster]:
    """A started cluster; it is stopped (and every node killed if need be) on exit. extra:
    more `cluster up` arguments. Room is left for nodes that join later (up to 6 in all)."""
    data_dir = tmp / "cluster"
    args = ["--nodes", str(nodes), "--base-port", str(free_base_port(max(nodes, 6))), *extra]
    if fault_injection:
        args.append("--allow-fault-injection")
    try:
        r = raftkv("cluster", "up", "--data-dir", str(data_dir), *args)
        assert r.returncode == 0, f"cluster up failed:\n{r.stdout}\n{r.stderr}"
        topo = load_topology(data_dir)
        assert topo is not None
        yield Cluster(data_dir, topo)
    finally:
        raftkv("cluster", "down", "--data-dir", str(data_dir), "--kill-after", "5")
        _kill_leftovers(data_dir)


@contextlib.contextmanager
def serving_cluster(tmp: Path, nodes: int, serve_args: tuple[str, ...]) -> Iterator[Cluster]:
    """Like running_cluster, but every `raftkv serve` gets serve_args too (limits, timeouts
    that `cluster up` does not pass); `cluster down` stops it as usual."""
    data_dir = tmp / "cluster"
    data_dir.mkdir(parents=True)
    topo = Topology.create(nodes, free_base_port(nodes), False)
    save_topology(data_dir, topo)
    cluster = Cluster(data_dir, topo)
    try:
        for node in topo.nodes:
            ndir = process.node_dir(data_dir, node)
            ndir.mkdir()
            with (ndir / process.LOG_FILE).open("ab") as log:
                proc = subprocess.Popen(
                    serve_command(process.node_config(data_dir, topo, node), extra=serve_args),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=serve_env(),
                )
            process.write_pid(ndir, proc.pid)
        cluster.leader(timeout=30)
        yield cluster
    finally:
        raftkv("cluster", "down", "--data-dir", str(data_dir), "--kill-after", "5")
        _kill_leftovers(data_dir)


def _kill_leftovers(data_dir: Path) -> None:
    """Safety net: no node of this test may outlive it, even if `cluster down` failed."""
    for pid_file in data_dir.glob("*/node.pid"):
        pid = running_pid(pid_file.parent)  # only a live `raftkv serve` of this very node
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
