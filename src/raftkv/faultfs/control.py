"""The control socket: one JSON object per line in, one JSON object per line out.

Commands (each answers {"ok": true, ...} or {"ok": false, "error": text}):
    {"cmd": "status"}                       counters, quota, armed faults, mounted, and what
                                            a power cut would lose now ("pending")
    {"cmd": "power-cut", "torn": false}     lose every unsynced op (torn: keep a prefix of the
                                            newest unsynced write to a named file first)
    {"cmd": "fail-fsync", "count": 1}       the next `count` fsyncs fail with EIO (0 disarms)
    {"cmd": "stall-fsync", "stall": true}   fsyncs block until released (false) or a power cut
    {"cmd": "quota", "bytes": N}            ENOSPC past N bytes of files in total (null: none)
    {"cmd": "quota", "free": N}             the same, with N bytes more than used now

Each command holds the state's lock for its duration only: a power cut on a few files takes
milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

from raftkv.errors import RaftkvError
from raftkv.faultfs.state import FaultState


class ControlError(RaftkvError):
    """The faultfs control socket refused a command or could not be reached."""


def handle(state: FaultState, mounted: bool, req: dict[str, Any]) -> dict[str, Any]:
    """Carry out one command; ValueError for a malformed one."""
    match req.get("cmd"):
        case "status":
            return {
                "ok": True,
                "mounted": mounted,
                "quota": state.quota,
                "fsync_failures_armed": state.fsync_failures_armed,
                "pending": state.pending(),
                **asdict(state.counters()),
            }
        case "power-cut":
            return {"ok": True, **state.power_cut(torn=bool(req.get("torn", False)))}
        case "fail-fsync":
            count = req.get("count", 1)
            if not isinstance(count, int) or count < 0:
                raise ValueError(f"count must be an integer >= 0, got {count!r}")
            with state.lock:
                state.fsync_failures_armed = count
            return {"ok": True}
        case "stall-fsync":
            state.stall_fsync(bool(req.get("stall", True)))
            return {"ok": True}
        case "quota":
            with state.lock:
                if "free" in req:
                    free = req["free"]
                    if not isinstance(free, int) or free < 0:
                        raise ValueError(f"free must be an integer >= 0, got {free!r}")
                    state.quota = state.used_bytes() + free
                else:
                    quota = req.get("bytes")
                    if quota is not None and (not isinstance(quota, int) or quota < 0):
                        raise ValueError(f"bytes must be an integer >= 0 or null, got {quota!r}")
                    state.quota = quota
                return {"ok": True, "quota": state.quota, "used": state.used_bytes()}
        case other:
            raise ValueError(f"unknown command {other!r}")


def serve(state: FaultState, path: Path, is_mounted: Any) -> threading.Thread:
    """Listen on the unix socket `path` in a daemon thread; is_mounted() -> bool."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(os.fspath(path))
    srv.listen(8)

    def loop() -> None:
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=_session, args=(conn,), daemon=True).start()

    def _session(conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as f:
            for line in f:
                try:
                    req = json.loads(line)
                    if not isinstance(req, dict):
                        raise ValueError("a command is a JSON object")
                    resp = handle(state, bool(is_mounted()), req)
                except (ValueError, OSError) as e:
                    resp = {"ok": False, "error": str(e)}
                f.write(json.dumps(resp).encode() + b"\n")
                f.flush()

    t = threading.Thread(target=loop, name="faultfs-control", daemon=True)
    t.start()
    return t


def command(path: Path, req: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send one command and return the answer; ControlError if refused or unreachable."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(os.fspath(path))
            s.sendall(json.dumps(req).encode() + b"\n")
            with s.makefile("rb") as f:
                line = f.readline()
    except OSError as e:
        raise ControlError(f"faultfs control socket {path}: {e}") from e
    return _answer(path, req, line)


async def command_async(path: Path, req: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """command() for asyncio callers."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_unix_connection(os.fspath(path))
            try:
                writer.write(json.dumps(req).encode() + b"\n")
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
    except (OSError, TimeoutError) as e:
        raise ControlError(f"faultfs control socket {path}: {e}") from e
    return _answer(path, req, line)


def _answer(path: Path, req: dict[str, Any], line: bytes) -> dict[str, Any]:
    if not line:
        raise ControlError(f"faultfs control socket {path}: closed without an answer")
    resp = json.loads(line)
    if not resp.get("ok"):
        raise ControlError(f"faultfs refused {req}: {resp.get('error')}")
    return dict(resp)
