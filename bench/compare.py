"""raftkv vs etcd 3.4 (JSON gateway) vs PySyncObj over HTTP: the same load generator, one run.

    bench/compare [--quick] [--runs 3] [--duration 10] [--out DIR] [--no-profile] ...

Starts a 3-node raftkv cluster (fsync on), a 3-member etcd 3.4 (../shared/bench/etcd_cluster.sh)
and a 3-node PySyncObj behind HTTP (../shared/bench/pysyncobj_http.py, no batching, no fsync), all
on 127.0.0.1, then runs ../shared/bench/kvload.py against each system's leader for three loads
(those three tools are not in this repository: --shared DIR says where they are):

    writes64  PUT, 64 clients          put1  PUT, 1 client          reads64  linearizable GET, 64

Rounds are interleaved: round r starts each system afresh in a rotated order, runs every load
on it and stops it, so only one system runs at a time and CPU noise from other work on the
machine hits all systems alike; figures are medians of the rounds and every ratio compares
figures from the same invocation. Beside every figure: the load generator's CPU, the servers'
CPU (all three processes, from /proc), the host's busy share and the CPU of everything else
(other people's jobs, and kernel work charged to no process). After the last raftkv round,
py-spy profiles the leader under writes64.
Writes OUT/RESULTS.md, OUT/results.json and OUT/results.png, and always stops every process it
started (also on an error or Ctrl-C). --quick: one short round, output to a temporary directory.
--memory: the long write-load memory check instead (memory.py).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ab  # bench/ab.py, beside this file (as memory.py: the script's folder is on sys.path)

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# Targets from DESIGN.md / issue 7, as ratios measured in one run (put1: absolute p50).
TARGET_RATIO = 2.0
TARGET_PUT1_P50_MS = 0.8
IDLE_PROBE_S = 3.0


class BenchError(Exception):
    """Something needed for the comparison is missing or failed to start."""


@dataclass(frozen=True)
class Load:
    name: str
    op: str
    clients: int
    title: str


LOADS = {
    "writes64": Load("writes64", "put", 64, "writes, 64 clients"),
    "put1": Load("put1", "put", 1, "single-client put"),
    "reads64": Load("reads64", "get", 64, "linearizable reads, 64 clients"),
}
TITLES = {name: load.title for name, load in LOADS.items()}


# --- helpers -------------------------------------------------------------------------------


def run(cmd: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    proc = subprocess.run(
        list(cmd), capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise BenchError(
            f"`{shlex.join(cmd)}` failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc.stdout


def http_json(url: str, timeout: float = 1.0) -> Any:
    with _opener.open(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def check_ports(system: str, ports: Sequence[int]) -> None:
    busy = [p for p in ports if not port_free(p)]
    if busy:
        raise BenchError(f"{system}: port(s) {busy} on 127.0.0.1 are in use; free them first")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def kill_pids(pids: Sequence[int], must_contain: str) -> None:
    """SIGTERM then SIGKILL exactly these PIDs, if their command line still names our dir."""
    mine = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except FileNotFoundError:
            continue
        if must_contain in cmdline:
            mine.append(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in mine):
        time.sleep(0.1)
    for pid in mine:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def proc_status(pid: int, field_name: str) -> int | None:
    """A kB figure from /proc/PID/status (VmRSS, VmHWM), or None."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    return None


# --- the systems ---------------------------------------------------------------------------


@dataclass
class System:
    name: str
    api: str  # kvload --api
    description: str
    commands: list[str] = field(default_factory=list)
    started: bool = False

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def pids(self) -> list[int]:
        raise NotImplementedError

    def leader_url(self) -> str:
        raise NotImplementedError

    def version(self) -> str:
        return ""


@dataclass
class Raftkv(System):
    data_dir: Path = Path()
    base_port: int = 9301
    pythonpath: str | None = None  # run another source tree (A/B against a baseline)
    extra_env: dict[str, str] = field(default_factory=dict)

    def _env(self) -> dict[str, str]:
        env = {**os.environ, **self.extra_env}
        if self.pythonpath:
            env["PYTHONPATH"] = self.pythonpath
        return env

    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{self.base_port + 1000 + i}" for i in range(3)]

    def start(self) -> None:
        check_ports(self.name, [self.base_port + k + i for k in (0, 1000) for i in range(3)])
        shutil.rmtree(self.data_dir, ignore_errors=True)
        cmd = [PY, "-m", "raftkv.cli", "cluster", "up", "--nodes", "3"]
        cmd += ["--data-dir", str(self.data_dir), "--base-port", str(self.base_port)]
        prefix = f"PYTHONPATH={self.pythonpath} " if self.pythonpath else ""
        self.commands.append(prefix + shlex.join(["raftkv", *cmd[3:]]))
        self.started = True
        run(cmd, env=self._env(), timeout=60)
        self.leader_url()

    def stop(self) -> None:
        pids = self.pids()
        with contextlib.suppress(BenchError, subprocess.TimeoutExpired):
            run([PY, "-m", "raftkv.cli", "cluster", "down", "--data-dir", str(self.data_dir)])
        kill_pids(pids, str(self.data_dir))
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def pids(self) -> list[int]:
        out = []
        for i in range(3):
            with contextlib.suppress(FileNotFoundError, ValueError):
                out.append(int((self.data_dir / f"n{i + 1}" / "node.pid").read_text()))
        return out

    def leader_url(self) -> str:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for url in self.urls():
                with contextlib.suppress(OSError, ValueError):
                    st = http_json(url + "/v1/status")
                    if st.get("role") == "leader":
                        return url + "/v1"
            time.sleep(0.2)
        raise BenchError(f"{self.name}: no leader")

    def version(self) -> str:
        code = "import raftkv.wire as w; print(w.__file__)"
        src = run([PY, "-c", code], env=self._env()).strip()
        return f"source {Path(src).parent.parent}"


@dataclass
class Etcd(System):
    script: Path = Path()
    base: Path = Path()

    def _run(self, action: str) -> str:
        return run(
            ["bash", str(self.script), action], env={**os.environ, "ETCD_BASE": str(self.base)}
        )

    def start(self) -> None:
        if shutil.which("etcd") is None and not os.environ.get("ETCD_BIN"):
            raise BenchError("etcd not found: apt-get install -y etcd-server etcd-client")
        check_ports(self.name, [2379, 2380, 22379, 22380, 32379, 32380])
        self.commands.append(f"ETCD_BASE={self.base} bash {self.script} start")
        self.started = True
        self._run("start")
        self.leader_url()

    def stop(self) -> None:
        pids = self.pids()
        with contextlib.suppress(BenchError, subprocess.TimeoutExpired):
            self._run("stop")
        kill_pids(pids, str(self.base))

    def pids(self) -> list[int]:
        with contextlib.suppress(BenchError):
            return [int(x) for x in self._run("pids").split()]
        return []

    def leader_url(self) -> str:
        deadline = time.monotonic() + 20
        while True:
            try:
                out = self._run("leader").strip()
                return out if out.startswith("http") else "http://" + out
            except BenchError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def version(self) -> str:
        out = run([os.environ.get("ETCD_BIN", "etcd"), "--version"])
        return out.splitlines()[0] if out else ""


@dataclass
class PySyncObj(System):
    script: Path = Path()

    def start(self) -> None:
        try:
            run([PY, "-c", "import pysyncobj"])
        except BenchError:
            raise BenchError(
                f"pysyncobj is not installed for {PY}: pip install pysyncobj==0.3.17"
            ) from None
        check_ports(self.name, [8001, 8002, 8003, 4321, 4322, 4323])
        self.commands.append(f"python {self.script} cluster start --no-batch")
        self.started = True
        run([PY, str(self.script), "cluster", "start", "--no-batch"], timeout=60)
        self.leader_url()

    def stop(self) -> None:
        pids = self.pids()
        with contextlib.suppress(BenchError, subprocess.TimeoutExpired):
            run([PY, str(self.script), "cluster", "stop"])
        kill_pids(pids, "pysyncobj_http.py")

    def pids(self) -> list[int]:
        out = []
        for i in range(3):
            with contextlib.suppress(FileNotFoundError, ValueError):
                out.append(int(Path(f"/tmp/bench-pso-http/n{i + 1}.pid").read_text()))
        return out

    def leader_url(self) -> str:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for i in range(3):
                url = f"http://127.0.0.1:{8001 + i}"
                with contextlib.suppress(OSError, ValueError):
                    if http_json(url + "/status").get("is_leader"):
                        return url
            time.sleep(0.2)
        raise BenchError(f"{self.name}: no leader")

    def version(self) -> str:
        code = "import importlib.metadata as m; print(m.version('pysyncobj'))"
        return "pysyncobj " + run([PY, "-c", code]).strip()


# --- running loads -------------------------------------------------------------------------


@dataclass
class Sample:
    system: str
    load: str
    round: int
    doc: dict[str, Any]
    command: str
    rss_kb: list[int]


def kvload(
    kvload_py: Path, system: System, load: Load, args: argparse.Namespace, populate: bool
) -> tuple[dict[str, Any], str]:
    url = system.leader_url()
    cmd = [PY, str(kvload_py), "--api", system.api, "--endpoints", url, "--op", load.op]
    cmd += ["--concurrency", str(load.clients), "--duration", str(args.duration)]
    cmd += ["--warmup", str(args.warmup), "--label", f"{system.name}/{load.name}"]
    cmd += ["--server-pids", ",".join(map(str, system.pids()))]
    if populate:
        cmd.append("--populate")
    out = run(cmd, timeout=args.duration + args.warmup + 180)
    doc = json.loads(out.strip().splitlines()[-1])
    return doc, shlex.join(["python", *cmd[1:]])


def fdatasync_floor(directory: Path, seconds: float = 1.0) -> float:
    """p50 microseconds of a 100-byte append + fdatasync in directory."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "floor.tmp"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    lat: list[float] = []
    try:
        end = time.perf_counter() + seconds
        while (t0 := time.perf_counter()) < end:
            os.write(fd, b"x" * 100)
            os.fdatasync(fd)
            lat.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(lat) * 1e6


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of pid."""
    out: dict[int, float] = {}
    clk = os.sysconf("SC_CLK_TCK")
    with contextlib.suppress(FileNotFoundError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
                f = (task / "stat").read_text().rsplit(")", 1)[1].split()
                out[int(task.name)] = (int(f[11]) + int(f[12])) / clk
    return out


def profile_leader(system: Raftkv, kvload_py: Path, args: argparse.Namespace) -> str | None:
    """py-spy the raftkv leader during one extra writes64 run: where its interpreter time goes
    (samples taken while it holds the GIL) and how busy each of its threads is."""
    spy = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
    if not Path(spy).exists():
        return None
    url = system.leader_url()
    leader_port = int(url.rsplit(":", 1)[1].split("/")[0])
    pids = system.pids()
    pid = pids[leader_port - system.base_port - 1000]
    raw = Path(tempfile.mkdtemp(prefix="raftkv-prof-")) / "leader.txt"
    cmd = [PY, str(kvload_py), "--api", "http-kv", "--endpoints", url, "--op", "put"]
    cmd += ["--concurrency", "64", "--duration", "9", "--warmup", "1"]
    cmd += ["--server-pids", ",".join(map(str, pids))]
    load = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    seconds = 5.0
    try:
        time.sleep(2.5)
        before, t0 = thread_cpu(pid), time.monotonic()
        spy_cmd = [spy, "record", "-p", str(pid), "-d", f"{seconds:g}", "-r", "200", "-f", "raw"]
        spy_cmd += ["--gil", "--nonblocking", "-o", str(raw)]
        subprocess.run(spy_cmd, capture_output=True, check=False, timeout=60)
        after, elapsed = thread_cpu(pid), time.monotonic() - t0
    finally:
        out, _ = load.communicate(timeout=60)
    if not raw.exists():
        return None
    threads = {tid: (after[tid] - before.get(tid, 0.0)) / elapsed for tid in after}
    main = threads.pop(pid, 0.0)
    busy = sorted((c for c in threads.values() if c >= 0.005), reverse=True)
    doc: dict[str, Any] = {}
    with contextlib.suppress(ValueError, IndexError):
        doc = json.loads(out.strip().splitlines()[-1])
    head = [
        f"Load: `{shlex.join(['python', *cmd[1:]])}` "
        f"({fmt(doc.get('ops_per_s'))} writes/s while profiled, py-spy itself adds CPU), "
        f"all three servers {fmt(doc.get('server_cpu_cores'), 2)} cores, host "
        f"{fmt(doc.get('host_cpu_busy_pct'))}% busy.",
        "",
        f"Leader threads over {elapsed:.1f} s: the event-loop thread (HTTP, Raft, apply, peer "
        f"I/O) used {main:.2f} of a core; its other threads (fdatasync via asyncio.to_thread) "
        + (", ".join(f"{c:.2f}" for c in busy) or "~0")
        + ".",
        "",
        "Where the leader's interpreter time goes (`py-spy record --gil --nonblocking -r 200 "
        "-f raw`: samples taken while a thread holds the GIL, i.e. running Python or C called "
        "from it), grouped by the innermost raftkv module on the stack:",
        "",
    ]
    return "\n".join(head) + "\n" + summarize_profile(raw.read_text())


_GROUPS = (
    ("raftkv/runtime/http_server.py", "HTTP server (parse, answer)"),
    ("raftkv/runtime/http_types.py", "HTTP server (parse, answer)"),
    ("httptools/", "HTTP server (parse, answer)"),
    ("raftkv/runtime/http_api.py", "HTTP handlers"),
    ("aiohttp/", "aiohttp (the forwarding client)"),
    ("raftkv/runtime/transport.py", "peer transport"),
    ("raftkv/wire.py", "peer message codec"),
    ("raftkv/runtime/node.py", "Ready loop (runtime/node.py)"),
    ("raftkv/core/", "Raft core"),
    ("raftkv/storage/", "WAL encode + write"),
    ("raftkv/kv/", "KV apply, command codec"),
    ("raftkv/", "other raftkv"),
)


def summarize_profile(raw: str, top: int = 15) -> str:
    own: dict[str, int] = {}
    groups: dict[str, int] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        leaf = frames[-1].rsplit(":", 1)[0] + ")" if ":" in frames[-1] else frames[-1]
        own[leaf] = own.get(leaf, 0) + n
        if "Runner.run" in frames[-1]:
            group = "event loop in C (uvloop: epoll, socket reads/writes, scheduling)"
        else:
            group = "other (asyncio, stdlib)"
            for frame in reversed(frames):
                hit = next((g for prefix, g in _GROUPS if prefix in frame), None)
                if hit is not None:
                    group = hit
                    break
        groups[group] = groups.get(group, 0) + n
    if not total:
        return "(no samples)"
    lines = ["| share | group (innermost raftkv module) |", "|---:|---|"]
    for name, n in sorted(groups.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {100 * n / total:.1f}% | {name} |")
    lines += ["", "| share | function (own time, leaf frame) |", "|---:|---|"]
    for name, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"| {100 * n / total:.1f}% | `{name}` |")
    return "\n".join(lines)


# --- the report ----------------------------------------------------------------------------


def med(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def aggregate(samples: list[Sample]) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for s in samples:
        out.setdefault(s.system, {}).setdefault(s.load, {"runs": []})["runs"].append(s.doc)
    for loads in out.values():
        for cell in loads.values():
            runs = cell["runs"]
            for key in ("ops_per_s", "p50_ms", "p99_ms", "loadgen_cpu_cores"):
                cell[key] = med([r.get(key) for r in runs])
            cell["server_cpu_cores"] = med([r.get("server_cpu_cores") for r in runs])
            cell["host_busy_pct"] = med([r.get("host_cpu_busy_pct") for r in runs])
            cell["other_cpu_cores"] = med([other_cpu(r) for r in runs])
            cell["errors"] = sum(sum(r.get("errors", {}).values()) for r in runs)
            ops, srv = cell["ops_per_s"], cell["server_cpu_cores"]
            cell["server_cpu_us_per_op"] = srv * 1e6 / ops if ops and srv is not None else None
            cell["ops_all"] = [r.get("ops_per_s") for r in runs]
    return out


def other_cpu(doc: dict[str, Any]) -> float | None:
    """Cores busy with anything but this load generator and these servers: other people's
    jobs, and kernel work charged to no process (loopback softirqs, the journal threads that
    an fsync wakes)."""
    busy, cores = doc.get("host_cpu_busy_pct"), doc.get("host_cores")
    srv, gen = doc.get("server_cpu_cores"), doc.get("loadgen_cpu_cores")
    if busy is None or cores is None or srv is None or gen is None:
        return None
    return max(0.0, float(busy) / 100 * float(cores) - float(srv) - float(gen))


def host_busy(seconds: float) -> float:
    """Busy share of the whole machine (all cores) over the next `seconds`, in percent."""

    def sample() -> tuple[int, int]:
        v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(v), v[3] + v[4]

    t0, i0 = sample()
    time.sleep(seconds)
    t1, i1 = sample()
    return 100.0 * (1 - (i1 - i0) / max(1, t1 - t0))


def fmt(v: float | None, nd: int = 0) -> str:
    if v is None:
        return "-"
    return f"{v:,.{nd}f}"


def ratio_text(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def write_report(
    out_dir: Path,
    agg: dict[str, dict[str, dict[str, Any]]],
    systems: list[System],
    samples: list[Sample],
    meta: dict[str, Any],
    profile: str | None,
) -> Path:
    names = [s.name for s in systems]
    rk = "raftkv" if "raftkv" in names else names[0]
    lines = [
        "# raftkv vs etcd 3.4 (JSON gateway) vs PySyncObj over HTTP",
        "",
        f"Produced by `{meta['command']}` on {meta['date']} ({meta['mode']} mode). "
        "Do not edit by hand: rerun the command.",
        "",
        "## Machine",
        "",
        f"- {meta['cpu']}, {meta['cores']} cores, {meta['mem_gb']:.0f} GiB RAM, "
        f"{meta['kernel']}, Python {meta['python']}",
        f"- disk: 100-byte append + fdatasync p50 {meta['floor_before_us']:.0f} us before the "
        f"runs, {meta['floor_after_us']:.0f} us after",
        f"- load average at start {meta['loadavg_start']}, at end {meta['loadavg_end']} "
        "(other work on the machine shows up here and in the host-busy column)",
        f"- host busy with nothing of ours running: {fmt(meta.get('busy_before'))}% of "
        f"{meta['cores']} cores over {IDLE_PROBE_S:g} s before the runs, "
        f"{fmt(meta.get('busy_after'))}% after; `other CPU` below = cores busy with "
        "neither the load generator nor the servers during each run: other people's jobs, "
        "plus kernel work charged to no process (loopback softirqs, the filesystem journal "
        "threads an fsync wakes: so fsyncing systems show some even on an idle machine)",
        "- every system: 3 nodes/members on 127.0.0.1, sharing the cores with the load "
        "generator; clients connect to the leader",
    ]
    for s in systems:
        lines.append(f"- {s.name}: {s.description}; {meta.get('versions', {}).get(s.name, '')}")
    lines += [
        "",
        "## Results",
        "",
        f"Medians of {meta['runs']} interleaved round(s) of {meta['duration']:g} s "
        f"(+{meta['warmup']:g} s warm-up) each; kvload.py, 8-byte keys, 256-byte values, "
        "10,000 keys. CPU in cores (1.0 = one core busy) over the measured window: "
        "`loadgen` = kvload itself, `servers` = all three server processes, `host` = whole "
        "machine busy.",
        "",
        "| load | system | ops/s | p50 ms | p99 ms | loadgen CPU | servers CPU "
        "| server CPU us/op | other CPU | host busy | errors | ops/s of each round |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for load in meta["loads"]:
        for name in names:
            c = agg.get(name, {}).get(load)
            if c is None:
                continue
            each = ", ".join(fmt(v) for v in c["ops_all"])
            lines.append(
                f"| {LOADS[load].title} | {name} | {fmt(c['ops_per_s'])} | "
                f"{fmt(c['p50_ms'], 2)} | {fmt(c['p99_ms'], 2)} | "
                f"{fmt(c['loadgen_cpu_cores'], 2)} | {fmt(c['server_cpu_cores'], 2)} | "
                f"{fmt(c['server_cpu_us_per_op'])} | {fmt(c['other_cpu_cores'], 2)} | "
                f"{fmt(c['host_busy_pct'])}% | "
                f"{c['errors']} | {each} |"
            )
    lines += ["", "## Ratios and targets", ""]
    lines += [
        "| load | raftkv | vs etcd gateway | vs PySyncObj | target | met? "
        "| each round: vs etcd / vs PySyncObj |"
    ]
    lines += ["|---|---:|---:|---:|---|---|---|"]
    cell = agg.get(rk, {})
    etcd = agg.get("etcd", {})
    pso = agg.get("pysyncobj", {})

    def get(d: dict[str, dict[str, Any]], load: str, key: str) -> float | None:
        v = d.get(load, {}).get(key)
        return float(v) if v is not None else None

    verdicts: list[bool] = []
    for load in meta["loads"]:
        if load == "put1":
            p50 = get(cell, load, "p50_ms")
            e, p = get(etcd, load, "p50_ms"), get(pso, load, "p50_ms")
            ok = p50 is not None and p50 <= TARGET_PUT1_P50_MS
            verdicts.append(ok)
            runs = cell.get(load, {}).get("runs", [])
            lines.append(
                f"| single-client put p50 | {fmt(p50, 3)} ms | {ratio_text(e, p50)} faster "
                f"({fmt(e, 3)} ms) | {ratio_text(p, p50)} faster ({fmt(p, 3)} ms) | "
                f"<= {TARGET_PUT1_P50_MS} ms | {'yes' if ok else 'NO'} | "
                f"raftkv p50 {', '.join(fmt(r.get('p50_ms'), 2) for r in runs)} ms |"
            )
            continue
        ops = get(cell, load, "ops_per_s")
        e, p = get(etcd, load, "ops_per_s"), get(pso, load, "ops_per_s")
        ok_e = bool(ops and e and ops / e >= TARGET_RATIO)
        ok_p = bool(ops and p and ops / p >= TARGET_RATIO)
        if load == "writes64":
            target, ok = f">= {TARGET_RATIO}x etcd and PySyncObj", ok_e and ok_p
        else:
            target, ok = f">= {TARGET_RATIO}x etcd", ok_e
        verdicts.append(ok)
        lines.append(
            f"| {LOADS[load].title} | {fmt(ops)}/s | {ratio_text(ops, e)} | "
            f"{ratio_text(ops, p)} | {target} | {'yes' if ok else 'NO'} | "
            f"{per_round(agg, rk, 'etcd', load)} / {per_round(agg, rk, 'pysyncobj', load)} |"
        )
    lines.append("")
    lines += [
        f"Targets met in this run: {sum(verdicts)} of {len(verdicts)}. "
        "Each round runs every system once, close together in time; with other jobs on the "
        "machine the per-round ratios show how much the medians can move.",
        "",
    ]
    lines += ab.report_lines([s.__dict__ for s in samples], TITLES)
    lines += ["## What limits", "", *limits_text(agg, rk, int(meta["cores"] or 2))]
    put1 = agg.get(rk, {}).get("put1")
    if put1 and put1.get("p50_ms") is not None:
        lines.append(
            f"- single-client put: p50 {float(put1['p50_ms']):.2f} ms. One write is, in "
            "series: client -> leader (HTTP), leader -> followers (sent before the leader's "
            "own fdatasync, so the two syncs overlap), a follower's fdatasync "
            f"(p50 {meta.get('floor_before_us', 0):.0f} us on this disk), follower -> leader, "
            "commit + apply, leader -> client: four wake-ups of sleeping processes over "
            "loopback plus one sync. The 3 servers used "
            f"{fmt(put1.get('server_cpu_cores'), 2)} cores for {fmt(put1.get('ops_per_s'))} "
            "writes/s, ten times their CPU per write at 64 clients (etcd and PySyncObj "
            "show the same): at this load the cost is per wake-up, not per request, and "
            "wake-ups on this VM are expensive."
        )
    if profile:
        lines.append(profile_verdict(profile))
    lines.append("")
    if meta.get("memory"):
        lines += ["## Memory", "", meta["memory"], ""]
    if profile:
        lines += [
            "## Profile",
            "",
            "The raftkv leader during one extra 64-client write run after the rounds:",
            "",
            profile,
            "",
        ]
    if meta.get("notes"):
        lines += ["## Notes", "", meta["notes"], ""]
    lines += ["## Commands", "", "```"]
    for s in systems:
        lines += list(dict.fromkeys(s.commands))  # once, though each round restarts it
    seen: set[tuple[str, str]] = set()
    for smp in samples:
        if (smp.system, smp.load) not in seen:
            seen.add((smp.system, smp.load))
            lines.append(smp.command)
    lines += ["```", ""]
    if meta.get("chart"):
        lines += [f"![chart]({meta['chart']})", ""]
    path = out_dir / "RESULTS.md"
    path.write_text("\n".join(lines))
    return path


def per_round(agg: dict[str, dict[str, dict[str, Any]]], a: str, b: str, load: str) -> str:
    """a's ops/s over b's, round by round."""
    mine = agg.get(a, {}).get(load, {}).get("ops_all") or []
    theirs = agg.get(b, {}).get(load, {}).get("ops_all") or []
    return ", ".join(ratio_text(x, y) for x, y in zip(mine, theirs, strict=False)) or "-"


def profile_verdict(profile: str) -> str:
    """What the profile says limits the writes: the leader's thread, the host, or neither."""
    thread = re.search(r"event-loop thread .*? used ([0-9.]+) of a core", profile)
    host = re.search(r"host ([0-9.]+)% busy", profile)
    if thread is None or host is None:
        return ""
    t, h = float(thread.group(1)), float(host.group(1))
    if t >= 0.85:
        why = "the leader's event-loop thread was saturated: it is the limit"
    elif h >= 85:
        why = (
            "the leader's thread was far from saturated while the host's cores were nearly "
            "all busy (load generator, 3 servers, py-spy, other jobs): the shared CPU is the "
            "limit, and the CPU per operation above is what to cut"
        )
    else:
        why = (
            "neither the leader's thread nor the host was saturated, so the writes were "
            "bounded by latency, not CPU: each Ready cycle on each node waits for its "
            "fdatasync and for the peers' answers (loopback hops between 3 processes), and "
            "64 clients are 64 requests in flight; more throughput needs shorter or "
            "overlapping cycles (a write pipeline that keeps accepting and sending while a "
            "sync is in flight), not less CPU per request"
        )
    return (
        f"- Profile (below): the leader's event-loop thread used {t:.2f} of a core with the "
        f"host {h:.0f}% busy: {why}."
    )


def limits_text(agg: dict[str, dict[str, dict[str, Any]]], rk: str, cores: int) -> list[str]:
    """Computed from this run: CPU per operation of each side, and the ceiling it implies."""
    out = []
    for load in ("writes64", "reads64"):
        cells = {n: agg.get(n, {}).get(load) for n in agg}
        mine = cells.get(rk)
        if not mine or not mine.get("ops_per_s"):
            continue
        ops = float(mine["ops_per_s"])
        srv = float(mine.get("server_cpu_cores") or 0.0)
        gen = float(mine.get("loadgen_cpu_cores") or 0.0)
        other = float(mine.get("other_cpu_cores") or 0.0)
        per_op = (srv + gen) * 1e6 / ops
        ceiling = cores * 1e6 / per_op
        rivals = ", ".join(
            f"{n} {float(c['server_cpu_cores']) * 1e6 / float(c['ops_per_s']):,.0f} us"
            for n, c in cells.items()
            if n != rk and c and c.get("ops_per_s") and c.get("server_cpu_cores") is not None
        )
        out.append(
            f"- {LOADS[load].title}: {rk} used {srv:.2f} cores in its 3 servers and {gen:.2f} "
            f"in the load generator, {per_op:,.0f} us of CPU per operation in all "
            f"({srv * 1e6 / ops:,.0f} us in the servers; rivals' servers: {rivals}). Everything "
            f"else (other jobs, kernel) took {other:.2f} of the {cores} cores meanwhile, host "
            f"{fmt(mine.get('host_busy_pct'))}% busy. At that cost per operation, all "
            f"{cores} cores would carry at most ~{ceiling:,.0f} ops/s."
        )
        for n, c in cells.items():
            if n == rk or not c or not c.get("ops_per_s") or c.get("server_cpu_cores") is None:
                continue
            if load == "reads64" and n != "etcd":
                continue
            theirs = (float(c["server_cpu_cores"]) + float(c["loadgen_cpu_cores"])) * 1e6
            theirs /= float(c["ops_per_s"])
            need = theirs / TARGET_RATIO - gen * 1e6 / ops
            out.append(
                f"  - vs {n}: {theirs:,.0f} us of CPU per operation in all (servers + load "
                f"generator). When the CPU is the limit, {TARGET_RATIO:g}x its rate needs "
                f"{rk} at <= {theirs / TARGET_RATIO:,.0f} us in all; with the load "
                f"generator's {gen * 1e6 / ops:,.0f} us per operation that leaves "
                + (f"{need:,.0f} us for the 3 servers" if need > 0 else "nothing for the servers")
                + f" (now {srv * 1e6 / ops:,.0f} us)."
            )
    out.append(
        "- The load generator and the 3 servers share the cores with other jobs: when the host is "
        "near 100% busy, every system's figure is bounded by the CPU left to it, and the "
        "ratios move with what else runs. The profile below shows whether raftkv's leader "
        "thread was saturated (then the leader is the limit) or not (then the host is)."
    )
    return out


def write_chart(
    out_dir: Path, agg: dict[str, dict[str, dict[str, Any]]], names: list[str], loads: list[str]
) -> str | None:
    try:
        import matplotlib  # noqa: PLC0415 (optional)

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return None
    colors = {"raftkv": "#2a9d8f", "etcd": "#e9c46a", "pysyncobj": "#e76f51"}
    fig, axes = plt.subplots(1, len(loads), figsize=(4.2 * len(loads), 3.8))
    if len(loads) == 1:
        axes = [axes]
    for ax, load in zip(axes, loads, strict=True):
        key = "p50_ms" if load == "put1" else "ops_per_s"
        vals, cpu, labels = [], [], []
        for n in names:
            c = agg.get(n, {}).get(load)
            if c is None or c.get(key) is None:
                continue
            vals.append(c[key])
            cpu.append(c.get("server_cpu_cores"))
            labels.append(n)
        bars = ax.bar(labels, vals, color=[colors.get(n, "#888") for n in labels])
        for b, v, c in zip(bars, vals, cpu, strict=True):
            txt = f"{v:,.2f}" if load == "put1" else f"{v:,.0f}"
            if c is not None:
                txt += f"\nsrv CPU {c:.2f}"
            ax.annotate(
                txt,
                (b.get_x() + b.get_width() / 2, b.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        top = max(vals or [1.0])
        if load == "put1":
            ax.axhline(TARGET_PUT1_P50_MS, color="k", ls="--", lw=1)
            ax.set_ylabel("p50 latency, ms (lower is better)")
            top = max(top, TARGET_PUT1_P50_MS)
        else:
            ax.set_ylabel("ops/s (higher is better)")
            goals = [
                TARGET_RATIO * float(v)
                for other in ("etcd", "pysyncobj")
                if (v := agg.get(other, {}).get(load, {}).get("ops_per_s"))
                and (other == "etcd" or load == "writes64")
            ]
            if goals:
                ax.axhline(max(goals), color="k", ls="--", lw=1)
                top = max(top, *goals)
        ax.set_title(LOADS[load].title, fontsize=10)
        ax.set_ylim(0, top * 1.3)
    busy = med([c.get("host_busy_pct") for n in agg.values() for c in n.values()])
    other = med([c.get("other_cpu_cores") for n in agg.values() for c in n.values()])
    fig.suptitle(
        "3 nodes on 127.0.0.1, kvload.py, medians; dashed: target (2x the best rival); "
        f"srv CPU = cores used by the 3 servers; host {fmt(busy)}% busy, "
        f"{fmt(other, 2)} cores used by everything else",
        fontsize=9,
    )
    fig.tight_layout()
    name = "results.png"
    fig.savefig(out_dir / name, dpi=110)
    plt.close(fig)
    return name


# --- main ----------------------------------------------------------------------------------


def machine_meta() -> dict[str, Any]:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError):
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gb": mem_kb / 1024 / 1024,
        "kernel": f"Linux {platform.release()}",
        "python": platform.python_version(),
    }


def loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM/SIGHUP raise like Ctrl-C does, so the finally blocks stop the clusters."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/compare", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one 3 s round: a smoke check")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--out", type=Path, default=None, help="default: bench/ (quick: a tmp dir)")
    p.add_argument("--systems", default="raftkv,etcd,pysyncobj")
    p.add_argument("--loads", default="writes64,put1,reads64")
    p.add_argument(
        "--shared",
        type=Path,
        default=REPO.parent / "shared" / "bench",
        help="where kvload.py, etcd_cluster.sh, pysyncobj_http.py live",
    )
    p.add_argument("--raftkv-port", type=int, default=9301, help="raft ports; HTTP = +1000")
    p.add_argument(
        "--baseline-src",
        default=None,
        help="also run raftkv from this src/ dir as 'baseline' (A/B)",
    )
    p.add_argument("--no-profile", action="store_true", help="skip the py-spy profile run")
    p.add_argument(
        "--pool",
        nargs="+",
        type=Path,
        metavar="RESULTS_JSON",
        help="run nothing: print the A/B verdict over the rounds of these earlier "
        "--baseline-src runs' results.json, pooled",
    )
    p.add_argument("--work-dir", type=Path, default=None, help="cluster data (default: tmp)")
    m = p.add_argument_group("memory (--memory: a long write load on raftkv alone, see memory.py)")
    m.add_argument("--memory", action="store_true", help="run the memory check instead")
    m.add_argument("--minutes", type=float, default=10.0, help="length of the write load (10)")
    m.add_argument("--clients", type=int, default=64, help="writers (64)")
    m.add_argument("--sample", type=float, default=10.0, help="seconds between samples (10)")
    a = p.parse_args(argv)
    if a.quick:
        a.runs, a.duration, a.warmup = 1, 3.0, 1.0
        a.no_profile = True
    return a


def pool(paths: Sequence[Path]) -> int:
    """Print the A/B section over the rounds of several runs."""
    docs = []
    for path in paths:
        try:
            docs.append(json.loads(path.read_text()))
        except (OSError, ValueError) as e:
            print(f"compare: cannot read {path}: {e}", file=sys.stderr)
            return 2
    lines = ab.report_lines(ab.pooled(docs), TITLES)
    if not lines:
        print("compare: no round ran both raftkv and baseline (--baseline-src)", file=sys.stderr)
        return 2
    print(f"Pooled from {len(docs)} run(s): {', '.join(str(p) for p in paths)}\n")
    print("\n".join(lines))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.pool:
        return pool(args.pool)
    shared: Path = args.shared.resolve()
    kvload_py = shared / "kvload.py"
    for f in (kvload_py, shared / "etcd_cluster.sh", shared / "pysyncobj_http.py"):
        if not f.exists():
            print(
                f"compare: {f} is missing: pass --shared DIR, the folder that holds kvload.py, "
                "etcd_cluster.sh and pysyncobj_http.py (they are not in this repository)",
                file=sys.stderr,
            )
            return 2
    if args.memory:
        from memory import run_memory  # noqa: PLC0415 (bench/memory.py, beside this file)

        return run_memory(args, kvload_py)
    loads = [x for x in args.loads.split(",") if x]
    bad = [x for x in loads if x not in LOADS]
    if bad:
        print(f"compare: unknown load(s) {bad}; choose from {list(LOADS)}", file=sys.stderr)
        return 2
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="raftkv-compare-"))
    out_dir: Path = args.out or (
        Path(tempfile.mkdtemp(prefix="raftkv-compare-quick-")) if args.quick else REPO / "bench"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    systems: list[System] = []
    wanted = [x for x in args.systems.split(",") if x]
    for name in wanted:
        if name == "raftkv":
            systems.append(
                Raftkv(
                    "raftkv",
                    "http-kv",
                    "raftkv, fsync on (one fdatasync per Ready on every node)",
                    data_dir=work / "raftkv",
                    base_port=args.raftkv_port,
                )
            )
        elif name == "etcd":
            systems.append(
                Etcd(
                    "etcd",
                    "etcd-gw",
                    "etcd v3 JSON gateway (/v3), fsync on",
                    script=shared / "etcd_cluster.sh",
                    base=work / "etcd",
                )
            )
        elif name == "pysyncobj":
            systems.append(
                PySyncObj(
                    "pysyncobj",
                    "http-kv",
                    "PySyncObj ReplDict behind aiohttp, --no-batch, no fsync (it never syncs)",
                    script=shared / "pysyncobj_http.py",
                )
            )
        else:
            print(f"compare: unknown system {name!r}", file=sys.stderr)
            return 2
    if args.baseline_src:
        systems.append(
            Raftkv(
                "baseline",
                "http-kv",
                f"raftkv from {args.baseline_src}",
                data_dir=work / "baseline",
                base_port=args.raftkv_port + 100,
                pythonpath=str(Path(args.baseline_src).resolve()),
            )
        )
    meta: dict[str, Any] = {
        **machine_meta(),
        "command": shlex.join(["bench/compare", *(sys.argv[1:] if argv is None else argv)]),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "quick" if args.quick else "full",
        "runs": args.runs,
        "duration": args.duration,
        "warmup": args.warmup,
        "loads": loads,
        "loadavg_start": loadavg(),
    }
    samples: list[Sample] = []
    profile: str | None = None
    interrupted = False
    with stop_on_signals():
        try:
            meta["busy_before"] = host_busy(IDLE_PROBE_S)
            print(
                f"compare: host busy {meta['busy_before']:.0f}% before starting "
                f"(load average {loadavg()})",
                file=sys.stderr,
                flush=True,
            )
            meta["floor_before_us"] = fdatasync_floor(work / "floor")
            total = args.runs * len(loads) * len(systems)
            done = 0
            began = time.monotonic()
            for r in range(args.runs):
                # One system runs at a time (the others' idle CPU stays out of its figures);
                # each round starts every system afresh, in a rotated order.
                order = systems[r % len(systems) :] + systems[: r % len(systems)]
                for s in order:
                    print(f"compare: starting {s.name}", file=sys.stderr, flush=True)
                    s.start()
                    meta.setdefault("versions", {})[s.name] = s.version()
                    for load_name in loads:
                        load = LOADS[load_name]
                        doc, cmd = kvload(kvload_py, s, load, args, populate=load.op == "get")
                        rss = [proc_status(p, "VmHWM") or 0 for p in s.pids()]
                        samples.append(Sample(s.name, load_name, r, doc, cmd, rss))
                        done += 1
                        left = (time.monotonic() - began) / done * (total - done)
                        print(
                            f"compare: [{done}/{total}, ~{left / 60:.0f} min left] "
                            f"round {r + 1}/{args.runs} {load_name:8s} "
                            f"{s.name:9s} {doc['ops_per_s']:9,.0f} ops/s  "
                            f"p50 {doc['p50_ms']} ms  srv CPU {doc['server_cpu_cores']}  "
                            f"loadgen CPU {doc['loadgen_cpu_cores']}  "
                            f"host {doc['host_cpu_busy_pct']}%  other "
                            f"{fmt(other_cpu(doc), 2)}",
                            file=sys.stderr,
                            flush=True,
                        )
                    if isinstance(s, Raftkv) and s.name == "raftkv" and r == args.runs - 1:
                        peaks = [proc_status(p, "VmHWM") for p in s.pids()]
                        meta["memory"] = (
                            f"raftkv nodes after the last round's loads: peak RSS "
                            f"{', '.join(f'{(k or 0) / 1024:.0f}' for k in peaks)} MiB. "
                            "RSS over a 10-minute write load: `bench/compare --memory` "
                            "(MEMORY.md)."
                        )
                        if not args.no_profile:
                            print("compare: profiling the raftkv leader", file=sys.stderr)
                            profile = profile_leader(s, kvload_py, args)
                    print(f"compare: stopping {s.name}", file=sys.stderr, flush=True)
                    s.stop()
                    s.started = False
            meta["floor_after_us"] = fdatasync_floor(work / "floor")
        except KeyboardInterrupt:
            interrupted = True
            print("compare: interrupted; stopping everything", file=sys.stderr)
        except (BenchError, subprocess.TimeoutExpired, OSError) as e:
            print(f"compare: {e}", file=sys.stderr)
            interrupted = True
        finally:
            for s in reversed(systems):
                if s.started:
                    print(f"compare: stopping {s.name}", file=sys.stderr, flush=True)
                    s.stop()
            if args.work_dir is None:
                shutil.rmtree(work, ignore_errors=True)
    if interrupted or not samples:
        return 1
    meta["busy_after"] = host_busy(IDLE_PROBE_S)
    meta["loadavg_end"] = loadavg()
    agg = aggregate(samples)
    meta["chart"] = write_chart(out_dir, agg, [s.name for s in systems], loads)
    raw = {
        "meta": meta,
        "aggregate": agg,
        "samples": [s.__dict__ for s in samples],
        "profile": profile,
    }
    (out_dir / "results.json").write_text(json.dumps(raw, indent=1, default=str))
    report = write_report(out_dir, agg, systems, samples, meta, profile)
    print(report.read_text())
    print(f"compare: wrote {report}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
