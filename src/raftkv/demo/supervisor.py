"""The demo's node processes: N real `raftkv serve` OS processes on 127.0.0.1, supervised.

Each node gets two free ports (Raft and HTTP) chosen once, so a node restarted after a crash
comes back on the same addresses with the same data directory. Output goes to
DIR/<id>/node.log. The processes run in their own session (a Ctrl-C in the terminal reaches
only the demo, which then stops them in order) and, on Linux, get SIGTERM if the demo dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import json
import secrets
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from raftkv.devcluster.ports import free_ports
from raftkv.errors import RaftkvError
from raftkv.nodeconfig import ServeConfig, serve_command, serve_env

HOST = "127.0.0.1"
LOG_FILE = "node.log"
DEMO_FILE = "demo.json"
STOP_TIMEOUT_S = 5.0
_PR_SET_PDEATHSIG = 1


class DemoError(RaftkvError):
    """The demo could not start or do what was asked; the message says why."""


@dataclass(frozen=True, slots=True)
class NodeAddr:
    id: str
    raft_port: int
    http_port: int

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    @property
    def peer_spec(self) -> str:
        return f"{self.id}={HOST}:{self.raft_port}@{self.http_url}"


@dataclass(frozen=True, slots=True)
class ClusterPlan:
    """What to start: node addresses, where their data lives, how they run."""

    cluster_id: str
    data_dir: Path
    nodes: tuple[NodeAddr, ...]
    slow: float
    tick_ms: float = 50.0
    election_ticks: int = 10
    extra_args: tuple[str, ...] = ()  # appended to every `raftkv serve` (tests: --no-fsync)

    @property
    def peers_spec(self) -> str:
        return ",".join(n.peer_spec for n in self.nodes)

    def command(self, node: NodeAddr) -> list[str]:
        cfg = ServeConfig(
            id=node.id,
            data_dir=self.data_dir / node.id,
            listen=f"{HOST}:{node.raft_port}",
            http=f"{HOST}:{node.http_port}",
            peers=tuple(n.peer_spec for n in self.nodes),
            cluster_id=self.cluster_id,
            allow_fault_injection=True,
            slow=self.slow,
            tick_ms=self.tick_ms,
            election_ticks=self.election_ticks,
        )
        return serve_command(cfg, extra=self.extra_args)


def make_plan(
    data_dir: Path, nodes: int, slow: float, extra_args: tuple[str, ...] = ()
) -> ClusterPlan:
    """A plan on fresh free ports. A data dir that already holds a demo cluster keeps its
    cluster id (so the nodes restart with their data); another node count is refused."""
    data_dir.mkdir(parents=True, exist_ok=True)
    meta_path = data_dir / DEMO_FILE
    cluster_id = f"demo-{secrets.token_hex(4)}"
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
            cluster_id, recorded = str(meta["cluster_id"]), int(meta["nodes"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DemoError(f"{meta_path} is unreadable ({e}): use another --data-dir") from e
        if recorded != nodes:
            raise DemoError(
                f"{data_dir} holds a {recorded}-node demo cluster, not {nodes}: pass "
                f"--nodes {recorded}, or use another --data-dir"
            )
    else:
        meta_path.write_text(json.dumps({"cluster_id": cluster_id, "nodes": nodes}) + "\n")
    ports = free_ports(2 * nodes, HOST)
    addrs = tuple(NodeAddr(f"n{i + 1}", ports[2 * i], ports[2 * i + 1]) for i in range(nodes))
    return ClusterPlan(cluster_id, data_dir, addrs, slow, extra_args=extra_args)


def _pdeathsig() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when the demo dies; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name, use_errno=True)

    def set_pdeathsig() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)

    return set_pdeathsig


@dataclass(slots=True)
class SupervisedNode:
    addr: NodeAddr
    proc: asyncio.subprocess.Process | None = None
    crashed: bool = False  # killed on purpose (the demo's crash button)
    log_offset: int = 0
    waiter: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.running and self.proc is not None else None


ExitCallback = Callable[[str, int, bool], None]  # (node id, exit code, expected)


class Supervisor:
    """Starts, kills, restarts and stops the node processes of one plan."""

    def __init__(self, plan: ClusterPlan, on_exit: ExitCallback | None = None) -> None:
        self.plan = plan
        self.nodes = {a.id: SupervisedNode(a) for a in plan.nodes}
        self._on_exit = on_exit
        self._stopping = False
        self._preexec = _pdeathsig()

    def node_ids(self) -> list[str]:
        return list(self.nodes)

    def http_url(self, node_id: str) -> str:
        return self._get(node_id).addr.http_url

    def is_running(self, node_id: str) -> bool:
        return self._get(node_id).running

    def pid(self, node_id: str) -> int | None:
        return self._get(node_id).pid

    def log_path(self, node_id: str) -> Path:
        return self.plan.data_dir / node_id / LOG_FILE

    async def start_all(self) -> None:
        for node_id in self.nodes:
            await self.start(node_id)

    async def start(self, node_id: str) -> int:
        """Start (or restart) one node; its pid."""
        node = self._get(node_id)
        if node.running:
            raise DemoError(f"{node_id} is already running (pid {node.pid})")
        ndir = self.plan.data_dir / node_id
        ndir.mkdir(parents=True, exist_ok=True)
        with self.log_path(node_id).open("ab") as log:
            node.log_offset = log.tell()
            proc = await asyncio.create_subprocess_exec(
                *self.plan.command(node.addr),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=self._preexec,
                env=serve_env(),
            )
        node.proc, node.crashed = proc, False
        node.waiter = asyncio.create_task(self._watch(node, proc), name=f"watch-{node_id}")
        return proc.pid

    async def crash(self, node_id: str) -> int:
        """kill -9 the node (no goodbye, no flush: what a power cut looks like); its pid."""
        node = self._get(node_id)
        if not node.running or node.proc is None:
            raise DemoError(f"{node_id} is not running")
        pid = node.proc.pid
        node.crashed = True
        with contextlib.suppress(ProcessLookupError):
            node.proc.send_signal(signal.SIGKILL)
        await node.proc.wait()
        return pid

    async def stop_all(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM every running node, then SIGKILL whatever is left after timeout."""
        self._stopping = True
        running = [n.proc for n in self.nodes.values() if n.running and n.proc is not None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        if running:
            _, late = await asyncio.wait(
                [asyncio.ensure_future(p.wait()) for p in running], timeout=timeout
            )
            for proc in running:
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
            for task in late:
                task.cancel()
        for node in self.nodes.values():
            if node.waiter is not None:
                node.waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await node.waiter

    def log_tail(self, node_id: str, lines: int = 15) -> str:
        node = self._get(node_id)
        try:
            with self.log_path(node_id).open("rb") as f:
                f.seek(node.log_offset)
                data = f.read()
        except OSError:
            return "    (no log)"
        tail = data.decode("utf-8", "replace").rstrip("\n").splitlines()[-lines:]
        return "\n".join("    " + line for line in tail) or "    (empty)"

    async def _watch(self, node: SupervisedNode, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        if self._on_exit is not None and node.proc is proc:
            self._on_exit(node.addr.id, code, node.crashed or self._stopping)

    def _get(self, node_id: str) -> SupervisedNode:
        try:
            return self.nodes[node_id]
        except KeyError:
            known = ", ".join(self.nodes)
            raise DemoError(f"no node {node_id!r} (nodes: {known})") from None
