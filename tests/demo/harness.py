"""Run the real demo (`python -m raftkv.demo`: N node processes plus the web server) for a test."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "demo"
START_TIMEOUT_S = 40.0
STOP_TIMEOUT_S = 15.0


@dataclass
class Demo:
    url: str
    proc: subprocess.Popen[str]
    output: list[str]

    def text(self) -> str:
        return "".join(self.output)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def running_demo(data_dir: Path, *, nodes: int = 3, slow: float = 2.0) -> Iterator[Demo]:
    """Start the demo, wait for its URL line, yield; then SIGTERM it and check it stopped."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "raftkv.demo",
        "--no-browser",
        "--port",
        str(port),
        "--nodes",
        str(nodes),
        "--slow",
        str(slow),
        "--data-dir",
        str(data_dir),
        "--node-arg=--no-fsync",
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    output: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    demo = Demo(url, proc, output)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"the demo printed no URL in {START_TIMEOUT_S}s:\n{demo.text()}"
                )
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"the demo exited ({proc.wait()}):\n{demo.text()}")
            output.append(line)
            if f"open {url}" in line:
                break
        yield demo
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        while True:
            try:
                rest = lines.get(timeout=2.0)
            except queue.Empty:
                break
            if rest is None:
                break
            output.append(rest)


def node_pids(demo: Demo) -> list[int]:
    """The node pids the demo printed at startup."""
    pids = []
    for line in demo.output:
        parts = line.split()
        if "pid" in parts:
            pids.append(int(parts[parts.index("pid") + 1]))
    return pids


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"
