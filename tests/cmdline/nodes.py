"""Real `raftkv serve` processes (this worktree's code, started through the one launcher
function) and the `raftkv` command run as a process, for the CLI tests."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from raftkv import cli
from raftkv.devcluster.ports import free_ports
from raftkv.nodeconfig import ServeConfig, serve_command, serve_env

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Ran:
    code: int
    out: bytes
    err: str
    seconds: float

    @property
    def text(self) -> str:
        return self.out.decode("utf-8", "replace")


def raftkv(
    *args: str,
    endpoints: str | None = None,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> Ran:
    """Run `python -m raftkv.cli ARGS` (with --endpoints if given); output as bytes."""
    argv = [sys.executable, "-m", "raftkv.cli"]
    if endpoints is not None:
        argv += ["--endpoints", endpoints]
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAFTKV_")}
    started = time.monotonic()
    proc = subprocess.run(
        [*argv, *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=timeout,
        env={**base, **(env or {})},
        check=False,
    )
    return Ran(
        proc.returncode,
        proc.stdout,
        proc.stderr.decode("utf-8", "replace"),
        time.monotonic() - started,
    )


def status(url: str) -> dict[str, Any] | None:
    try:
        with _OPENER.open(url + "/v1/status", timeout=1.0) as resp:
            doc: dict[str, Any] = json.loads(resp.read())
            return doc
    except (OSError, ValueError, urllib.error.URLError):
        return None


def wait_leader(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        st = status(url)
        if st is not None and st.get("role") == "leader":
            return
        assert proc.poll() is None, f"the node exited:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no leader at {url}:\n{log.read_text()}"
        time.sleep(0.05)


@contextlib.contextmanager
def one_node(
    tmp: Path, *, extra: Sequence[str] = (), env: dict[str, str] | None = None
) -> Iterator[str]:
    """A single-node cluster (it elects itself); yields its HTTP URL."""
    raft, http = free_ports(2)
    cfg = ServeConfig(
        id="n1",
        data_dir=tmp / "n1",
        listen=f"127.0.0.1:{raft}",
        http=f"127.0.0.1:{http}",
        fsync=False,
        wal_segment_mb=1,
    )
    log = tmp / "n1.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            serve_command(cfg, extra=extra),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**serve_env(), **(env or {})},
        )
    try:
        url = f"http://127.0.0.1:{http}"
        wait_leader(url, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _Stdin:
    def __init__(self, data: bytes) -> None:
        self.buffer = io.BytesIO(data)


@dataclass
class InProcess:
    """`raftkv --endpoints URL ARGV` in this process (faster than a process under load)."""

    capsys: pytest.CaptureFixture[bytes]
    monkeypatch: pytest.MonkeyPatch
    endpoints: str

    def __call__(self, *argv: str, stdin: bytes = b"") -> tuple[int, bytes, str]:
        """Exit code, stdout, stderr."""
        self.monkeypatch.setattr(sys, "stdin", _Stdin(stdin))
        code = cli.main(["--endpoints", self.endpoints, *argv])
        out, err = self.capsys.readouterr()
        return code, out, err.decode("utf-8", "replace")
