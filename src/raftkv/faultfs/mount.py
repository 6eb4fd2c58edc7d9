"""FaultMount: run one faultfs process from Python (tests, the chaos harness).

    with FaultMount(mountpoint, backing, control) as fs:   # mounted when start() returns
        ... use mountpoint ...
        fs.power_cut()

Invariant: the faultfs process gets SIGTERM when the process that started it dies (Linux
PR_SET_PDEATHSIG), and libfuse unmounts on SIGTERM, so a crashed harness leaves no mount.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from raftkv.faultfs.control import ControlError, command, command_async

PR_SET_PDEATHSIG = 1
MOUNT_TIMEOUT_S = 10.0


def _term_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def is_mounted(path: Path) -> bool:
    target = os.fspath(path.resolve())
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


def unmount(path: Path) -> None:
    """Lazy unmount (works while files are still open); no error if not mounted."""
    if is_mounted(path):
        tool = shutil.which("fusermount3") or "fusermount3"
        subprocess.run([tool, "-u", "-z", os.fspath(path)], check=False, capture_output=True)


class FaultMount:
    def __init__(
        self,
        mountpoint: Path,
        backing: Path,
        control: Path,
        *,
        seed: int = 0,
        log: Path | None = None,
    ) -> None:
        self.mountpoint, self.backing, self.control = mountpoint, backing, control
        self.seed = seed
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.backing.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "raftkv.faultfs", os.fspath(self.mountpoint)]
        cmd += ["--backing", os.fspath(self.backing), "--control", os.fspath(self.control)]
        cmd += ["--seed", str(self.seed)]
        out = self.log.open("ab") if self.log is not None else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT if self.log is not None else subprocess.PIPE,
                start_new_session=True,
                preexec_fn=_term_with_parent,  # noqa: PLW1509 (prctl only)
            )
        finally:
            if self.log is not None and not isinstance(out, int):
                out.close()
        deadline = time.monotonic() + MOUNT_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise ControlError(f"faultfs exited with {self.proc.returncode}: {err.strip()}")
            with contextlib.suppress(ControlError):
                if command(self.control, {"cmd": "status"}, timeout=1.0)["mounted"]:
                    return
            time.sleep(0.02)
        self.stop()
        raise ControlError(f"faultfs did not mount {self.mountpoint} in {MOUNT_TIMEOUT_S:g}s")

    def stop(self) -> None:
        unmount(self.mountpoint)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stderr is not None:
                self.proc.stderr.close()
            self.proc = None

    def __enter__(self) -> FaultMount:
        self.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- commands ---------------------------------------------------------------------------

    def command(self, req: dict[str, Any]) -> dict[str, Any]:
        return command(self.control, req)

    async def command_async(self, req: dict[str, Any]) -> dict[str, Any]:
        return await command_async(self.control, req)

    def power_cut(self, torn: bool = False) -> dict[str, Any]:
        return self.command({"cmd": "power-cut", "torn": torn})

    def fail_fsync(self, count: int = 1) -> None:
        self.command({"cmd": "fail-fsync", "count": count})

    def stall_fsync(self, stall: bool = True) -> None:
        self.command({"cmd": "stall-fsync", "stall": stall})

    def set_quota(self, *, total: int | None = None, free: int | None = None) -> dict[str, Any]:
        req: dict[str, Any] = {"cmd": "quota"}
        if free is not None:
            req["free"] = free
        else:
            req["bytes"] = total
        return self.command(req)

    def status(self) -> dict[str, Any]:
        return self.command({"cmd": "status"})
