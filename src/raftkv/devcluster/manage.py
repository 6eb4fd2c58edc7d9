"""`raftkv cluster up` and `raftkv cluster down`: a local dev cluster of detached processes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from raftkv.devcluster import process
from raftkv.devcluster.topology import (
    DEFAULT_BASE_PORT,
    NodeSpec,
    Topology,
    load_topology,
    save_topology,
)
from raftkv.errors import BadRequest, DiskError, RaftkvError
from raftkv.runtime.settings import check_wal_segment_mb
from raftkv.storage import fsutil

DEFAULT_NODES = 3
POLL_S = 0.2
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
STATUS_TIMEOUT_S = 0.5
FAILURE_GRACE_S = 1.0  # after one node died during startup, how long to wait for the others


class ClusterError(RaftkvError):
    """A local cluster of `raftkv serve` processes (a dev cluster, or the chaos harness's)
    could not be started, stopped or driven."""


@dataclass(frozen=True, slots=True)
class UpOptions:
    data_dir: Path
    nodes: int | None  # None: as recorded (3 for a new cluster)
    base_port: int | None  # None: as recorded (the default for a new cluster)
    allow_fault_injection: bool
    timeout: float
    snapshot_entries: int | None = None  # None: as recorded (the node default when new)
    wal_segment_mb: int | None = None  # None: as recorded (the node default when new)


def up(opts: UpOptions, out: TextIO, err: TextIO) -> Topology:
    """Start every node of the cluster in opts.data_dir that is not running; wait for a leader."""
    data_dir = opts.data_dir.resolve()
    topo = _topology_for(data_dir, opts)
    data_dir.mkdir(parents=True, exist_ok=True)
    started: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    for node in topo.nodes:
        ndir = process.node_dir(data_dir, node)
        pid = process.running_pid(ndir)
        if pid is not None:
            print(f"{node.id} is already running (pid {pid})", file=err)
            continue
        process.check_port_free(node.host, node.raft_port, f"{node.id} raft")
        process.check_port_free(node.host, node.http_port, f"{node.id} http")
    save_topology(data_dir, topo)
    restart = any((process.node_dir(data_dir, n) / "raft").exists() for n in topo.nodes)
    for node in topo.nodes:
        if process.running_pid(process.node_dir(data_dir, node)) is None:
            try:
                started[node.id] = process.spawn(data_dir, topo, node)
            except DiskError as e:
                raise ClusterError(_with_others_hint(str(e), started, data_dir)) from e
    verb = "restarting" if restart else "starting"
    if started:
        print(f"{verb} {', '.join(started)} in {data_dir}", file=err)
    leader, term = _wait_for_leader(data_dir, topo, started, opts.timeout, err)
    print(
        f"raftkv cluster of {len(topo.nodes)} nodes in {data_dir}: leader {leader}, term {term}",
        file=out,
    )
    for node in topo.nodes:
        pid = process.read_pid(process.node_dir(data_dir, node))
        print(
            f"  {node.id}  {node.http_url}  raft {node.raft_address}  pid {pid}  "
            f"log {process.node_dir(data_dir, node) / process.LOG_FILE}",
            file=out,
        )
    print(f"export RAFTKV_ENDPOINTS={','.join(topo.endpoints)}", file=out)
    return topo


def down(data_dir: Path, timeout: float, out: TextIO) -> dict[str, str]:
    """Stop every node of the cluster in data_dir (SIGTERM, then SIGKILL after timeout)."""
    data_dir = data_dir.resolve()
    topo = load_topology(data_dir)
    if topo is None:
        raise ClusterError(f"no cluster in {data_dir} (no cluster.json): nothing to stop")
    pids: dict[str, int] = {}
    outcome: dict[str, str] = {}
    for node in topo.nodes:
        pid = process.running_pid(process.node_dir(data_dir, node))
        if pid is None:
            outcome[node.id] = "was not running"
        else:
            pids[node.id] = pid
    outcome.update(process.stop(pids, timeout))
    for node in topo.nodes:
        process.remove_pid(process.node_dir(data_dir, node))
        pid_note = f" (pid {pids[node.id]})" if node.id in pids else ""
        print(f"{node.id}{pid_note}: {outcome[node.id]}", file=out)
    return outcome


def join(data_dir: Path, timeout: float, out: TextIO, err: TextIO) -> NodeSpec:
    """Start one more node (the next id and ports) that joins the running cluster in data_dir
    as a learner (`raftkv serve --join`); wait until it knows the leader."""
    data_dir = data_dir.resolve()
    recorded = load_topology(data_dir)
    if recorded is None:
        raise ClusterError(f"no cluster in {data_dir} (no cluster.json): run `cluster up` first")
    topo, node = recorded.with_joined()
    process.check_port_free(node.host, node.raft_port, f"{node.id} raft")
    process.check_port_free(node.host, node.http_port, f"{node.id} http")
    save_topology(data_dir, topo)
    proc, offset = process.spawn(data_dir, topo, node)
    print(f"starting {node.id} in {data_dir}, joining as a learner", file=err)
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        if code is not None:
            process.remove_pid(data_dir / node.id)
            log = data_dir / node.id / process.LOG_FILE
            raise ClusterError(
                f"node {node.id} exited with code {code}; the end of {log}:\n"
                f"{process.log_tail(log, offset)}"
            )
        status = fetch_status(node.http_url)
        if status is not None and status.get("leader"):
            break
        if time.monotonic() > deadline:
            raise ClusterError(f"{node.id} did not hear from a leader within {timeout:g}s")
        time.sleep(POLL_S)
    print(
        f"  {node.id}  {node.http_url}  raft {node.raft_address}  pid {proc.pid}  learner; "
        f"promote it with: raftkv member promote {node.id} --wait-caught-up 30",
        file=out,
    )
    print(f"export RAFTKV_ENDPOINTS={','.join(topo.endpoints)}", file=out)
    return node


def remove(data_dir: Path, node_id: str, timeout: float, kill_after: float, out: TextIO) -> None:
    """Remove node_id from the cluster's membership (`raftkv member remove`, within timeout
    seconds), stop its process if it still runs (SIGKILL kill_after seconds after SIGTERM), and
    drop it from cluster.json (its data directory stays, for inspection)."""
    data_dir = data_dir.resolve()
    recorded = load_topology(data_dir)
    if recorded is None:
        raise ClusterError(f"no cluster in {data_dir} (no cluster.json)")
    topo = recorded.without(node_id)
    node = next(n for n in recorded.nodes if n.id == node_id)
    others = [n.http_url for n in topo.nodes]
    asyncio.run(_remove_member(others, node_id, timeout))
    print(f"removed {node_id} from the cluster's membership", file=out)
    ndir = process.node_dir(data_dir, node)
    pid = process.running_pid(ndir)
    if pid is not None:
        outcome = process.stop({node_id: pid}, kill_after)[node_id]
        print(f"{node_id} (pid {pid}): {outcome}", file=out)
    process.remove_pid(ndir)
    save_topology(data_dir, topo)
    print(f"export RAFTKV_ENDPOINTS={','.join(topo.endpoints)}", file=out)


async def _remove_member(endpoints: list[str], node_id: str, timeout: float) -> None:
    from raftkv.client import AsyncClient  # noqa: PLC0415 (only this command needs it)

    async with AsyncClient(endpoints, timeout=timeout) as client:
        await client.remove_member(node_id)


def _topology_for(data_dir: Path, opts: UpOptions) -> Topology:
    if opts.wal_segment_mb is not None:
        check_wal_segment_mb(opts.wal_segment_mb)
    recorded = load_topology(data_dir)
    if recorded is None:
        topo = Topology.create(
            opts.nodes or DEFAULT_NODES,
            opts.base_port or DEFAULT_BASE_PORT,
            opts.allow_fault_injection,
        )
        return dataclasses.replace(
            topo, snapshot_entries=opts.snapshot_entries, wal_segment_mb=opts.wal_segment_mb
        )
    if opts.nodes is not None and opts.nodes != len(recorded.nodes):
        raise BadRequest(
            f"{data_dir} holds a {len(recorded.nodes)}-node cluster, not {opts.nodes}: "
            "drop --nodes to restart it, or use another --data-dir"
        )
    if opts.base_port is not None and opts.base_port != recorded.base_port:
        raise BadRequest(
            f"{data_dir} holds a cluster on base port {recorded.base_port}, not "
            f"{opts.base_port}: drop --base-port to restart it, or use another --data-dir"
        )
    snapshot_entries = opts.snapshot_entries
    if snapshot_entries is None:
        snapshot_entries = recorded.snapshot_entries
    wal_segment_mb = opts.wal_segment_mb
    if wal_segment_mb is None:
        wal_segment_mb = recorded.wal_segment_mb
    return dataclasses.replace(
        recorded,
        allow_fault_injection=opts.allow_fault_injection,
        snapshot_entries=snapshot_entries,
        wal_segment_mb=wal_segment_mb,
    )


def _startup_failures(
    data_dir: Path, started: dict[str, tuple[subprocess.Popen[bytes], int]]
) -> str:
    """Why nodes died during startup: each failed node, its exit code and the end of its
    log (which names the file and the reason). Their pid files are removed: they are stale.
    Nodes failing for the same reason (a full disk) tend to die together: wait a moment."""
    deadline = time.monotonic() + FAILURE_GRACE_S
    while time.monotonic() < deadline and any(p.poll() is None for p, _ in started.values()):
        time.sleep(POLL_S / 4)
    parts, alive = [], {}
    for node_id, (proc, offset) in started.items():
        code = proc.poll()
        if code is None or code == 0:
            alive[node_id] = (proc, offset)
            continue
        ndir = data_dir / node_id
        process.remove_pid(ndir)
        log = ndir / process.LOG_FILE
        tail = process.log_tail(log, offset)
        if len(tail.splitlines()) <= 1:  # only our own "starting" line: the node wrote nothing
            tail += (
                f"\n    (nothing from the node itself: is the disk full? "
                f"{fsutil.mib(fsutil.free_bytes(ndir))} free in {ndir})"
            )
        parts.append(
            f"node {node_id} exited with code {code} during startup; the end of {log}:\n{tail}"
        )
    return _with_others_hint("\n".join(parts), alive, data_dir)


def _with_others_hint(
    message: str, started: dict[str, tuple[subprocess.Popen[bytes], int]], data_dir: Path
) -> str:
    if not started:
        return message
    return (
        f"{message}\n(started and still running: {', '.join(started)}; stop them with: "
        f"raftkv cluster down --data-dir {data_dir})"
    )


def fetch_status(url: str, timeout: float = STATUS_TIMEOUT_S) -> dict[str, Any] | None:
    """GET url/v1/status, or None if the node does not answer (yet)."""
    try:
        with _opener.open(url + "/v1/status", timeout=timeout) as resp:
            doc = json.loads(resp.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return doc if isinstance(doc, dict) else None


def _wait_for_leader(
    data_dir: Path,
    topo: Topology,
    started: dict[str, tuple[subprocess.Popen[bytes], int]],
    timeout: float,
    err: TextIO,
) -> tuple[str, int]:
    """Poll every node until all answer and one leads; ClusterError if a node dies."""
    begin = time.monotonic()
    next_report = begin + 1.0
    states: dict[str, str] = {}
    exited: set[str] = set()
    while True:
        for node_id, (proc, _) in started.items():
            code = proc.poll()
            if code == 0 and node_id not in exited:
                # A node removed from the cluster shuts itself down (status 0).
                exited.add(node_id)
                print(f"{node_id} exited (removed from the cluster?); see its node.log", file=err)
            elif code is not None and code != 0:
                raise ClusterError(_startup_failures(data_dir, started))
        leader: tuple[str, int] | None = None
        for node in topo.nodes:
            if node.id in exited:
                states[node.id] = "exited"
                continue
            status = fetch_status(node.http_url)
            if status is None:
                states[node.id] = "starting"
                continue
            role = str(status.get("role", "?"))
            states[node.id] = role
            if role == "leader":
                leader = (node.id, int(status.get("term", 0)))
        if leader is not None and all(s != "starting" for s in states.values()):
            return leader
        now = time.monotonic()
        if now - begin > timeout:
            summary = " ".join(f"{n}={s}" for n, s in states.items())
            raise ClusterError(
                f"no leader after {timeout:g}s ({summary}); see the node.log files in "
                f"{data_dir}, and stop the nodes with: raftkv cluster down --data-dir {data_dir}"
            )
        if now >= next_report:
            summary = " ".join(f"{n}={s}" for n, s in states.items())
            print(f"  waiting for a leader ({now - begin:.0f}s): {summary}", file=err)
            next_report += 1.0
        time.sleep(POLL_S)
