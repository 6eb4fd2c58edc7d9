"""The node as an OS process: signals, stdout discipline, restart on the same data dir."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from raftkv.devcluster.ports import free_ports
from raftkv.errors import BadRequest
from raftkv.runtime.server import serve

from .cluster import LocalCluster, run_async

_NODE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from raftkv.runtime.server import run
    from raftkv.runtime.settings import NodeSettings, parse_peers
    raft, http, data = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    peers = parse_peers(f"solo=127.0.0.1:{raft}@http://127.0.0.1:{http}")
    settings = NodeSettings(node_id="solo", data_dir=data, listen=("127.0.0.1", raft),
                            http=("127.0.0.1", http), peers=peers, tick_ms=20)
    run(settings, ready_file=data / "ready.json")
    """
)


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxies from env


def _start(tmp_path: Path, raft: int, http: int) -> subprocess.Popen[bytes]:
    ready = tmp_path / "solo" / "ready.json"
    ready.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", _NODE, str(raft), str(http), str(tmp_path / "solo")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 15
    while not ready.exists():
        assert proc.poll() is None, proc.communicate()[1].decode()
        assert time.monotonic() < deadline, "node did not start"
        time.sleep(0.02)
    assert json.loads(ready.read_text())["http"] == f"http://127.0.0.1:{http}"
    return proc


def _request(method: str, url: str, data: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method=method)
    deadline = time.monotonic() + 10
    while True:
        try:
            with _OPENER.open(req, timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            if e.code != 503 or time.monotonic() > deadline:  # 503: no leader elected yet
                return e.code, e.read()
            time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_gracefully_and_data_survives(tmp_path: Path, sig: signal.Signals) -> None:
    raft, http = free_ports(2)
    base = f"http://127.0.0.1:{http}"
    proc = _start(tmp_path, raft, http)
    try:
        status, body = _request("PUT", f"{base}/v1/kv/durable", b"yes")
        assert status == 200, body
    finally:
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err.decode()
    assert out == b""  # only logs, and they go to stderr
    assert b"solo: stopped" in err

    proc = _start(tmp_path, raft, http)
    try:
        assert _request("GET", f"{base}/v1/kv/durable") == (200, b"yes")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)


def test_data_dir_of_another_node_is_refused(tmp_path: Path) -> None:
    async def main() -> None:
        async with LocalCluster(tmp_path, n=1) as c:
            await c.leader()
        settings = c.settings["n1"]
        other = LocalCluster(tmp_path / "x", n=2).settings["n2"]
        with pytest.raises(BadRequest, match="holds node 'n1'"):
            await serve(replace(other, data_dir=settings.data_dir))

    run_async(main)


def test_shutdown_ends_open_streams_promptly(tmp_path: Path) -> None:
    async def main() -> None:
        c = LocalCluster(tmp_path, n=1)
        async with c:
            await c.leader()
            watch = await c.client.get(c.url("n1", "/v1/watch?prefix="))
            events = await c.client.get(c.url("n1", "/v1/events"))
            assert watch.status == 200 and events.status == 200
            loop = asyncio.get_running_loop()
            started = loop.time()
            await c.stop("n1")
            assert loop.time() - started < 2.0  # not the 15 s keep-alive nor the 3 s drain
            assert await asyncio.wait_for(watch.read(), 5) == b""
            assert b'"kind":"state"' in await asyncio.wait_for(events.read(), 5)

    run_async(main)
