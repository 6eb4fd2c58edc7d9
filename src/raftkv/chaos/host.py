"""What a node's "machine" adds for the disk and clock faults: its file system (a faultfs
mount as the data directory) and its clock (libfaketime), and how a node's exit is judged.

Clock: every node process of a campaign with clock faults runs with libfaketime preloaded
(Debian package faketime), reading its offset and rate from a per-node file on every clock
call (FAKETIME_NO_CACHE=1, about 4 us a call here). libfaketime fakes CLOCK_REALTIME and
CLOCK_MONOTONIC (FAKETIME_DONT_FAKE_MONOTONIC=0), which is what raftkv's ticks read: the event
loop's clock (uvloop's uv_now and asyncio's loop.time()) and time.monotonic() both go through
libc's clock_gettime, measured to run at the faked rate. libfaketime applies a rate from the
process's start, so a rate change alone would also jump the clock by elapsed x (new - old);
NodeClock offsets that jump away so the clock stays continuous (to within the few ms between
the harness's spawn time and the process's own start).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

LIBFAKETIME_PATHS = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
)


def find_libfaketime() -> str | None:
    return next((p for p in LIBFAKETIME_PATHS if os.path.exists(p)), None)


@dataclass(slots=True)
class NodeClock:
    """A node's fake clock: fake_elapsed(t) = rate * (t - spawned_at) + offset_s, with t the
    harness's (real) monotonic clock."""

    path: Path
    spawned_at: float = 0.0
    rate: float = 1.0
    offset_s: float = 0.0

    def env(self, lib: str) -> dict[str, str]:
        return {
            "LD_PRELOAD": lib,
            "FAKETIME_TIMESTAMP_FILE": str(self.path),
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "0",
        }

    def reset(self) -> None:
        """Before a (re)start: a true clock from the new process's start."""
        self.spawned_at = time.monotonic()
        self.rate, self.offset_s = 1.0, 0.0
        self._write()

    def set_rate(self, rate: float) -> None:
        now = time.monotonic() - self.spawned_at
        self.offset_s += (self.rate - rate) * now  # continuous at `now`
        self.rate = rate
        self._write()

    def jump(self, seconds: float) -> None:
        self.offset_s += seconds
        self._write()

    def _write(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(f"{self.offset_s:+.6f}s x{self.rate:.6f}\n")
        os.replace(tmp, self.path)  # libfaketime never reads half a file


# --- how a node's exit is judged ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeExit:
    """One exit of a node process the harness did not kill itself."""

    node: str
    code: int
    kind: str  # "fail-stop" | "refused-start" | "crash"
    message: str  # the node's own last words (its CRITICAL log line), or why it is a crash

    @property
    def accepted(self) -> bool:
        return self.kind != "crash"

    def to_json(self) -> dict[str, object]:
        return {"node": self.node, "code": self.code, "kind": self.kind, "message": self.message}


_CRITICAL = re.compile(r" CRITICAL [\w.]+: (.*)$")


def classify_exit(
    node: str, code: int, log_tail: str, *, disk_fault: bool, served: bool
) -> NodeExit:
    """Judge an exit from the node's log since its last start.

    fail-stop: status 1 after a disk fault injected on it, and it said DISK FAILURE;
    refused-start: status 1 before it ever answered, with a clear CRITICAL message and no
      traceback (e.g. a CorruptionError naming the file and offset);
    crash: anything else (a signal, a traceback, an exit without a message, an internal error,
      a node that served and then stopped with no disk fault injected)."""
    lines = log_tail.splitlines()
    critical = [m.group(1) for line in lines if (m := _CRITICAL.search(line))]
    last = critical[-1] if critical else ""
    if code < 0:
        return NodeExit(node, code, "crash", f"killed by signal {-code}; last words: {last!r}")
    if code != 1 or not critical:
        return NodeExit(node, code, "crash", f"exit status {code} without a clear message")
    if "Traceback" in log_tail or "Ready loop crashed" in log_tail:
        return NodeExit(node, code, "crash", f"internal error: {last}")
    if disk_fault and any("DISK FAILURE" in c for c in critical):
        return NodeExit(node, code, "fail-stop", last)
    if served:
        return NodeExit(node, code, "crash", f"stopped on its own: {last}")
    return NodeExit(node, code, "refused-start", last)
