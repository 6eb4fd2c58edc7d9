"""`raftkv serve` processes (this worktree's code: the test's own interpreter) on free ports,
with their stderr in a log file kept off the volume under test, and raw HTTP to them."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raftkv.devcluster.ports import free_ports

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxies from env
FAULT_NODE = Path(__file__).with_name("fsync_fault_node.py")


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    method: str, url: str, data: bytes | None = None, timeout: float = 10.0
) -> Answer | None:
    """One HTTP request; None when nothing answers (connection refused or reset)."""
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return Answer(resp.status, resp.read(), dict(resp.headers))
    except urllib.error.HTTPError as e:
        return Answer(e.code, e.read(), dict(e.headers))
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def ok(answer: Answer | None) -> Answer:
    """answer, asserted to be a 200."""
    assert answer is not None and answer.status == 200, answer
    return answer


@dataclass
class Node:
    id: str
    data_dir: Path
    raft_port: int
    http_port: int
    log: Path
    extra: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def raft(self) -> str:
        return f"127.0.0.1:{self.raft_port}"

    def start(self, peers: str | None = None, *, launcher: tuple[str, ...] = ()) -> None:
        """Spawn `raftkv serve` (through launcher, a script that ends up calling the CLI)."""
        cmd = [sys.executable, *launcher] if launcher else [sys.executable, "-m", "raftkv.cli"]
        cmd += ["serve", "--id", self.id, "--data-dir", str(self.data_dir)]
        cmd += ["--listen", self.raft, "--http", f"127.0.0.1:{self.http_port}"]
        if peers:
            cmd += ["--peers", peers]
        with self.log.open("ab") as log:
            log.write(f"=== {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [*cmd, *self.extra], stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )

    def wait_up(self, timeout: float = 20.0) -> None:
        """Until /v1/status answers; AssertionError (with the log) if the node exits first."""
        deadline = time.monotonic() + timeout
        while request("GET", self.url + "/v1/status", timeout=1.0) is None:
            code = self.poll()
            assert code is None, f"{self.id} exited with {code}:\n{self.output()}"
            assert time.monotonic() < deadline, f"{self.id} did not start:\n{self.output()}"
            time.sleep(0.05)

    def poll(self) -> int | None:
        assert self.proc is not None
        return self.proc.poll()

    def wait_exit(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> int:
        """SIGTERM, then SIGKILL if it lingers; the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(5)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def status(self) -> dict[str, Any]:
        answer = request("GET", self.url + "/v1/status", timeout=2.0)
        assert answer is not None and answer.status == 200, answer
        doc: dict[str, Any] = answer.json()
        return doc

    def metric(self, name: str) -> float:
        """The value of one unlabelled metric in /metrics."""
        answer = request("GET", self.url + "/metrics", timeout=2.0)
        assert answer is not None and answer.status == 200, answer
        for line in answer.body.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"no metric {name}")

    def put(self, key: str, value: bytes) -> Answer | None:
        return request("PUT", f"{self.url}/v1/kv/{key}", value)

    def get(self, key: str, consistency: str = "linearizable") -> Answer | None:
        return request("GET", f"{self.url}/v1/kv/{key}?consistency={consistency}")


def make_nodes(
    logs: Path, data_dirs: dict[str, Path], extra: tuple[str, ...] = ()
) -> tuple[list[Node], str]:
    """Nodes for the given ids and data dirs on free ports, and their --peers spec."""
    ports = free_ports(2 * len(data_dirs))
    nodes = [
        Node(nid, ddir, ports[2 * i], ports[2 * i + 1], logs / f"{nid}.log", extra)
        for i, (nid, ddir) in enumerate(data_dirs.items())
    ]
    peers = ",".join(f"{n.id}={n.raft}@{n.url}" for n in nodes)
    return nodes, peers


@contextlib.contextmanager
def stopped_at_exit(nodes: list[Node]) -> Iterator[list[Node]]:
    """No node outlives the test (and its volume can be unmounted)."""
    try:
        yield nodes
    finally:
        for node in nodes:
            if node.proc is not None:
                node.stop()


def start_all(nodes: list[Node], peers: str) -> Node:
    """Start every node, wait until each answers, and return the leader they agree on."""
    for node in nodes:
        node.start(peers)
    for node in nodes:
        node.wait_up()
    return leader_of(nodes)


def eventually(check: Any, timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll check() until it returns something truthy; its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def leader_of(nodes: list[Node], timeout: float = 20.0) -> Node:
    """The node every running node agrees leads."""

    def agreed() -> Node | None:
        leaders = set()
        for node in nodes:
            if node.poll() is not None:
                continue
            answer = request("GET", node.url + "/v1/status", timeout=1.0)
            if answer is None or answer.status != 200:
                return None
            leaders.add(answer.json()["leader"])
        if len(leaders) != 1 or None in leaders:
            return None
        return next((n for n in nodes if n.id in leaders), None)

    found: Node = eventually(agreed, timeout, "an agreed leader")
    return found
