"""A cluster of real `raftkv serve` processes owned by the chaos harness.

Each node runs as its own OS process on 127.0.0.1 with free ports, its own data directory
(real fsync) and --allow-fault-injection. The harness keeps the Popen handles so it can
kill -9, restart, SIGSTOP and SIGCONT any node.

Invariants:
- Nodes are spawned with PR_SET_PDEATHSIG=SIGKILL (Linux), so none outlives the thread that
  started it even if the harness itself is killed; close() kills them in any case, and an
  atexit hook kills whatever a harness that never reached close() left running.
- A node is SIGCONTed before it is killed (a stopped process holds its ports until it runs).
- Fault injection and status calls never block on a paused or dead node for longer than a
  short per-call timeout.
- With disk=True each node's data directory is a faultfs mount (raftkv.faultfs) over
  ROOT/<id>/backing, mounted before the node first starts and unmounted after it is killed
  for good; with clock=True each node runs under libfaketime (raftkv.chaos.host).
- Every exit the harness did not cause is recorded and judged (host.classify_exit) when the
  node is restarted or the cluster closes.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import dataclasses
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from raftkv.chaos.host import NodeClock, NodeExit, classify_exit, find_libfaketime
from raftkv.chaos.proxy import LinkProxy
from raftkv.client import ServerError, ServerStatus
from raftkv.devcluster.manage import ClusterError
from raftkv.devcluster.ports import free_ports
from raftkv.devcluster.topology import NodeSpec
from raftkv.faultfs import FaultMount
from raftkv.nodeconfig import ServeConfig, serve_command, serve_env

HOST = "127.0.0.1"
CALL_TIMEOUT_S = 1.0
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class NodeTiming:
    """Raft timing passed to every node (the defaults of `raftkv serve`)."""

    tick_ms: float = 50.0
    election_ticks: int = 10
    request_timeout_s: float = 5.0


@dataclass(slots=True)
class NodeProcess:
    spec: NodeSpec
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    paused: bool = False
    starts: int = 0
    fs: FaultMount | None = None  # its data directory's file system (disk faults)
    clock: NodeClock | None = None  # its libfaketime clock (clock faults)
    disk_fault: bool = False  # a disk fault was injected since its last start
    served: bool = False  # it answered a status call since its last start
    log_offset: int = 0  # where its log's current start begins
    exits: list[NodeExit] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid_text(self) -> str:
        return "-" if self.proc is None else str(self.proc.pid)


_LIVE: set[subprocess.Popen[bytes]] = set()  # every node process not yet reaped


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE):
        with contextlib.suppress(OSError):
            proc.send_signal(signal.SIGCONT)
            proc.kill()


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGKILL the child when its parent thread dies."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None

    def prctl() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return prctl


@dataclass
class ChaosCluster:
    """N node processes. Use `async with` or call close(); start() waits for a leader."""

    size: int
    root: Path  # data directories live here (deleted by close() unless keep_data)
    log_dir: Path  # node logs (kept)
    timing: NodeTiming = field(default_factory=NodeTiming)
    keep_data: bool = False
    fsync: bool = True
    proxy: bool = False  # route Raft traffic through relays, for one-way partitions
    disk: bool = False  # data directories on faultfs mounts (power cuts, disk faults)
    clock: bool = False  # nodes under libfaketime (clock faults)
    snapshot_entries: int | None = None  # --snapshot-entries for every node (None: default)
    nodes: dict[str, NodeProcess] = field(init=False)
    cluster_id: str = field(init=False)
    _http: aiohttp.ClientSession | None = field(init=False, default=None)
    _proxy: LinkProxy | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ClusterError(f"a cluster needs at least one node, got {self.size}")
        ports = free_ports(2 * self.size, HOST)
        self.cluster_id = f"chaos-{secrets.token_hex(4)}"
        self.nodes = {}
        self._faketime = find_libfaketime() if self.clock else None
        if self.clock and self._faketime is None:
            raise ClusterError("clock faults need libfaketime: apt-get install faketime")
        for i in range(self.size):
            spec = NodeSpec(f"n{i + 1}", ports[2 * i], ports[2 * i + 1], HOST)
            home = self.root / spec.id
            node = NodeProcess(
                spec, home / "data" if self.disk else home, self.log_dir / f"{spec.id}.log"
            )
            if self.disk:
                node.fs = FaultMount(
                    node.data_dir,
                    home / "backing",
                    home / "faultfs.sock",
                    seed=i,
                    log=self.log_dir / f"{spec.id}.faultfs.log",
                )
            if self.clock:
                node.clock = NodeClock(home / "faketime")
            self.nodes[spec.id] = node

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> ChaosCluster:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    @property
    def ids(self) -> list[str]:
        return list(self.nodes)

    @property
    def endpoints(self) -> list[str]:
        return [n.spec.http_url for n in self.nodes.values()]

    def url(self, node_id: str) -> str:
        return self.nodes[node_id].spec.http_url

    def peers_spec(self, node_id: str) -> str:
        """--peers for node_id: the real addresses, or its own relay port for each peer."""
        proxy = self._proxy
        specs = []
        for peer in self.nodes.values():
            if proxy is None or peer.spec.id == node_id:
                specs.append(peer.spec.peer_spec)
            else:
                port = proxy.port(node_id, peer.spec.id)
                specs.append(f"{peer.spec.id}={HOST}:{port}@{peer.spec.http_url}")
        return ",".join(specs)

    def command(self, node: NodeProcess) -> list[str]:
        t = self.timing
        cfg = ServeConfig(
            id=node.spec.id,
            data_dir=node.data_dir,
            listen=node.spec.raft_address,
            http=f"{node.spec.host}:{node.spec.http_port}",
            peers=tuple(self.peers_spec(node.spec.id).split(",")),
            cluster_id=self.cluster_id,
            allow_fault_injection=True,
            tick_ms=t.tick_ms,
            election_ticks=t.election_ticks,
            request_timeout=t.request_timeout_s,
            fsync=self.fsync,
        )
        if self.snapshot_entries is not None:
            cfg = dataclasses.replace(cfg, snapshot_entries=self.snapshot_entries)
        return serve_command(cfg)

    async def start(self, leader_timeout: float = 20.0) -> str:
        """Start every node; return the first leader's id."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.proxy and self._proxy is None:
            self._proxy = LinkProxy({i: n.spec.raft_port for i, n in self.nodes.items()})
            await self._proxy.start()
        for node in self.nodes.values():
            if node.fs is not None and node.fs.proc is None:
                node.data_dir.parent.mkdir(parents=True, exist_ok=True)
                await asyncio.to_thread(node.fs.start)
        for node_id in self.nodes:
            self.spawn(node_id)
        leader = await self.wait_for_leader(leader_timeout)
        if leader is None:
            raise ClusterError(
                f"no leader within {leader_timeout:g}s of starting {self.size} nodes "
                f"(logs in {self.log_dir})"
            )
        return leader

    def spawn(self, node_id: str) -> None:
        """Start (or restart) one node process, with its data if it ran before.

        Must run on the thread that outlives the cluster (see PR_SET_PDEATHSIG)."""
        node = self.nodes[node_id]
        if node.alive:
            raise ClusterError(f"{node_id} is already running (pid {node.pid_text})")
        self._judge_exit(node)
        node.data_dir.mkdir(parents=True, exist_ok=True)
        env = serve_env()
        if node.clock is not None and self._faketime is not None:
            node.clock.reset()
            env.update(node.clock.env(self._faketime))
        with node.log_path.open("ab") as log:
            log.write(f"=== chaos: start {node.starts + 1} of {node_id} ===\n".encode())
            log.flush()
            node.log_offset = log.tell()
            node.proc = subprocess.Popen(
                self.command(node),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the harness, which cleans up
                close_fds=True,
                env=env,
                preexec_fn=_die_with_parent(),  # noqa: PLW1509 (prctl only; async-signal-safe)
            )
        _LIVE.add(node.proc)
        node.paused = False
        node.starts += 1
        node.disk_fault = node.served = False

    def _judge_exit(self, node: NodeProcess) -> None:
        """Record the previous process's exit unless we killed it (SIGKILL)."""
        proc = node.proc
        if proc is None or proc.poll() is None or proc.returncode == -signal.SIGKILL:
            return
        _LIVE.discard(proc)
        with node.log_path.open("rb") as f:
            f.seek(node.log_offset)
            tail = f.read().decode("utf-8", "replace")
        node.exits.append(
            classify_exit(
                node.spec.id,
                proc.returncode,
                tail,
                disk_fault=node.disk_fault,
                served=node.served,
            )
        )
        node.proc = None

    def mark_disk_fault(self, node_id: str) -> None:
        """A disk fault was injected on node_id: a fail-stop exit is now expected of it."""
        self.nodes[node_id].disk_fault = True

    def fs(self, node_id: str) -> FaultMount:
        fs = self.nodes[node_id].fs
        if fs is None:
            raise ClusterError("disk faults need the cluster started with disk=True")
        return fs

    def clock_of(self, node_id: str) -> NodeClock:
        clock = self.nodes[node_id].clock
        if clock is None:
            raise ClusterError("clock faults need the cluster started with clock=True")
        return clock

    def kill(self, node_id: str, *, reap: bool = True) -> None:
        """kill -9 (after SIGCONT if paused) and reap. reap=False only sends the signal: a
        process killed inside a stalled faultfs fsync cannot finish exiting (closing its files
        needs the file system) until the stall ends."""
        node = self.nodes[node_id]
        proc = node.proc
        if proc is None:
            return
        if proc.poll() is not None:
            _LIVE.discard(proc)
            return
        with contextlib.suppress(ProcessLookupError):
            if node.paused:
                proc.send_signal(signal.SIGCONT)
            proc.send_signal(signal.SIGKILL)
        if not reap:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
            _LIVE.discard(proc)
        node.paused = False

    def pause(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.proc is not None and node.alive and not node.paused:
            node.proc.send_signal(signal.SIGSTOP)
            node.paused = True

    def resume(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.proc is not None and node.paused:
            with contextlib.suppress(ProcessLookupError):
                node.proc.send_signal(signal.SIGCONT)
            node.paused = False

    def running(self) -> list[str]:
        """Nodes whose process is alive and not paused (they can answer)."""
        return [i for i, n in self.nodes.items() if n.alive and not n.paused]

    def dead(self) -> list[str]:
        return [i for i, n in self.nodes.items() if not n.alive]

    def exits(self) -> list[NodeExit]:
        """Every exit we did not cause, judged (see host.classify_exit), oldest first."""
        for node in self.nodes.values():
            self._judge_exit(node)
        return [e for node in self.nodes.values() for e in node.exits]

    def crashed(self) -> list[str]:
        """Exits that are findings: a crash, not a fail-stop or a clear refusal to start."""
        return [
            f"{e.node} exited with status {e.code}: {e.message}"
            for e in self.exits()
            if not e.accepted
        ]

    def refusing(self) -> list[str]:
        """Nodes down now whose last start ended in a clear refusal to start."""
        for node in self.nodes.values():
            self._judge_exit(node)  # an exit since the last look
        return [
            i
            for i, n in self.nodes.items()
            if not n.alive and n.exits and n.exits[-1].kind == "refused-start"
        ]

    async def close(self) -> None:
        for node_id in self.nodes:
            self.kill(node_id)
        for node in self.nodes.values():
            if node.fs is not None:
                await asyncio.to_thread(node.fs.stop)
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._proxy is not None:
            await self._proxy.close()
            self._proxy = None
        if not self.keep_data:
            shutil.rmtree(self.root, ignore_errors=True)

    # --- HTTP to one node -------------------------------------------------------------------

    def http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return self._http

    async def status(self, node_id: str, timeout: float = CALL_TIMEOUT_S) -> ServerStatus | None:
        """The node's status, or None when it is down, paused or does not answer in time."""
        if node_id not in self.running():
            return None
        try:
            async with self.http().get(
                self.url(node_id) + "/v1/status", timeout=aiohttp.ClientTimeout(total=timeout)
            ) as resp:
                if resp.status != 200:
                    return None
                status = ServerStatus.from_json(await resp.json())
                self.nodes[node_id].served = True
                return status
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, ServerError):
            return None

    async def statuses(self, timeout: float = CALL_TIMEOUT_S) -> dict[str, ServerStatus]:
        ids = self.running()
        found = await asyncio.gather(*(self.status(i, timeout) for i in ids))
        return {i: s for i, s in zip(ids, found, strict=True) if s is not None}

    async def leader(self) -> str | None:
        """The leader of the highest term among answering nodes, if a majority of the cluster
        (leader included) reports it at that term."""
        sts = await self.statuses()
        leaders = [s for s in sts.values() if s.role == "leader"]
        if not leaders:
            return None
        top = max(leaders, key=lambda s: s.term)
        agree = sum(1 for s in sts.values() if s.term == top.term and s.leader == top.id)
        return top.id if agree > self.size // 2 else None

    async def any_leader(self) -> str | None:
        """The node that claims leadership at the highest term (no quorum agreement needed)."""
        sts = await self.statuses()
        leaders = [s for s in sts.values() if s.role == "leader"]
        return max(leaders, key=lambda s: s.term).id if leaders else None

    async def wait_for_leader(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while True:
            leader = await self.leader()
            if leader is not None or time.monotonic() >= deadline:
                return leader
            await asyncio.sleep(0.05)

    async def set_net(self, node_id: str, body: Mapping[str, Any]) -> bool:
        """POST /v1/debug/net on one running node; False if it is down or did not answer."""
        if node_id not in self.running():
            return False
        for _ in range(3):
            try:
                async with self.http().post(
                    self.url(node_id) + "/v1/debug/net",
                    json=dict(body),
                    timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT_S),
                ) as resp:
                    if resp.status == 200:
                        return True
                    text = await resp.text()
                    raise ClusterError(
                        f"{node_id} refused fault {dict(body)}: {resp.status} {text}"
                    )
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.1)
        return False

    def cut_links(self, pairs: list[tuple[str, str]]) -> None:
        """One-way cuts: for each (src, dst), src's Raft messages no longer reach dst."""
        if self._proxy is None:
            raise ClusterError("one-way partitions need the cluster started with proxy=True")
        self._proxy.cut(pairs)

    async def heal_network(self) -> None:
        if self._proxy is not None:
            self._proxy.heal()
        await asyncio.gather(*(self.set_net(i, {"heal": True}) for i in self.running()))

    async def stale_get(self, node_id: str, key: str) -> tuple[bool, str | None]:
        """(answered, value) of a stale read of key on one node (value None: absent)."""
        url = f"{self.url(node_id)}/v1/kv/{key}"
        try:
            async with self.http().get(
                url,
                params={"consistency": "stale"},
                timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT_S * 2),
            ) as resp:
                if resp.status == 404:
                    return True, None
                if resp.status != 200:
                    return False, None
                return True, (await resp.read()).decode("utf-8", "replace")
        except (aiohttp.ClientError, TimeoutError):
            return False, None
