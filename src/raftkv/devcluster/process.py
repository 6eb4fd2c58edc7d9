"""Node processes of a dev cluster: spawn detached, pid files, liveness, stop.

A pid file is trusted only while /proc says that pid is a live `raftkv serve` of this very
node directory, so a stale pid file can never make us signal an unrelated process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from raftkv.devcluster.topology import NodeSpec, Topology
from raftkv.errors import BadRequest
from raftkv.nodeconfig import ServeConfig, serve_command, serve_env
from raftkv.storage import fsutil

PID_FILE = "node.pid"
LOG_FILE = "node.log"


def node_dir(data_dir: Path, node: NodeSpec) -> Path:
    return data_dir / node.id


def node_config(data_dir: Path, topo: Topology, node: NodeSpec) -> ServeConfig:
    """The settings of one node of the dev cluster (what cluster.json leaves unset, None
    there, is the node's default)."""
    others = tuple(n.http_url for n in topo.nodes if n.id != node.id)
    cfg = ServeConfig(
        id=node.id,
        data_dir=node_dir(data_dir, node),
        listen=node.raft_address,
        http=f"{node.host}:{node.http_port}",
        cluster_id=topo.cluster_id,
        # --join is ignored once the node has joined: it restarts from its data
        join=others if node.joined else (),
        peers=() if node.joined else tuple(topo.peers_spec.split(",")),
        allow_fault_injection=topo.allow_fault_injection,
    )
    if topo.snapshot_entries is not None:
        cfg = dataclasses.replace(cfg, snapshot_entries=topo.snapshot_entries)
    if topo.wal_segment_mb is not None:
        cfg = dataclasses.replace(cfg, wal_segment_mb=topo.wal_segment_mb)
    return cfg


def spawn(data_dir: Path, topo: Topology, node: NodeSpec) -> tuple[subprocess.Popen[bytes], int]:
    """Start one node detached (own session, output to its node.log); (process, log offset).
    DiskError naming the node and the file if its node.log or node.pid cannot be written (no
    process is left running then)."""
    ndir = node_dir(data_dir, node)
    log_path = ndir / LOG_FILE
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    try:
        ndir.mkdir(parents=True, exist_ok=True)
        log = log_path.open("ab", buffering=0)
    except OSError as e:
        raise fsutil.write_error(f"node {node.id}", log_path, e) from e
    with log:
        offset = log.tell()
        try:
            log.write(f"=== raftkv cluster up: starting {node.id} at {stamp} ===\n".encode())
        except OSError as e:
            raise fsutil.write_error(f"node {node.id}", log_path, e) from e
        proc = subprocess.Popen(
            serve_command(node_config(data_dir, topo, node)),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # detached: survives the terminal and this command
            close_fds=True,
            env=serve_env(),
        )
    try:
        write_pid(ndir, proc.pid)
    except OSError as e:
        proc.kill()  # untracked, it could not be stopped by `cluster down`
        proc.wait()
        raise fsutil.write_error(f"node {node.id}", ndir / PID_FILE, e) from e
    return proc, offset


def write_pid(ndir: Path, pid: int) -> None:
    fsutil.atomic_write(ndir / PID_FILE, f"{pid}\n".encode())


def read_pid(ndir: Path) -> int | None:
    try:
        return int((ndir / PID_FILE).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def remove_pid(ndir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (ndir / PID_FILE).unlink()


def pid_alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): trust kill(0)
    return stat.rpartition(")")[2].split()[0] != "Z"


def is_node_process(pid: int, ndir: Path) -> bool:
    """pid is alive and is `raftkv serve` for the node directory ndir."""
    if not pid_alive(pid):
        return False
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no /proc: cannot check, trust the pid file
    return b"serve" in args and str(ndir).encode() in args


def running_pid(ndir: Path) -> int | None:
    """The pid of this node's live process, per its pid file, else None."""
    pid = read_pid(ndir)
    return pid if pid is not None and is_node_process(pid, ndir) else None


def stop(pids: dict[str, int], timeout: float) -> dict[str, str]:
    """SIGTERM every pid, wait up to timeout, then SIGKILL. {node id: how it stopped}."""
    outcome: dict[str, str] = {}
    for node_id, pid in pids.items():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        outcome[node_id] = "stopped"
    deadline = time.monotonic() + timeout
    waiting = dict(pids)
    while waiting and time.monotonic() < deadline:
        waiting = {n: p for n, p in waiting.items() if pid_alive(p)}
        if waiting:
            time.sleep(0.05)
    for node_id, pid in waiting.items():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        outcome[node_id] = f"killed (no exit {timeout:g}s after SIGTERM)"
    end = time.monotonic() + 5.0
    while any(pid_alive(p) for p in waiting.values()) and time.monotonic() < end:
        time.sleep(0.05)
    return outcome


def check_port_free(host: str, port: int, what: str) -> None:
    """BadRequest naming the port when something else listens there."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the node's servers do
        try:
            s.bind((host, port))
        except OSError as e:
            reason = "in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
            raise BadRequest(
                f"port {port} ({what}) on {host} is {reason}: stop whatever uses it, or pick "
                "other ports with --base-port (on a new --data-dir)"
            ) from None


def log_tail(path: Path, offset: int = 0, lines: int = 20) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return "(no log)"
    tail = data.decode("utf-8", "replace").rstrip("\n").splitlines()[-lines:]
    return "\n".join("    " + line for line in tail) or "    (empty)"
