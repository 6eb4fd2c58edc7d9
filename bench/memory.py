"""Memory under a long write load: RSS of every raftkv node over time (issue #7, #8).

    bench/compare --memory [--minutes 10] [--clients 64] [--sample 10] [--out DIR]

Starts a 3-node raftkv cluster (fsync on, `raftkv cluster up`), drives it with
../shared/bench/kvload.py (64 clients writing 256-byte values over 10,000 keys, so the key-value
state itself stays the same size) in back-to-back segments, and every --sample seconds records
each node's RSS (VmRSS), the size of its data directory (WAL segments + snapshots) and its log
index. With log compaction working, RSS and the data directory level off while the log index
keeps growing; without it both grow with the number of writes. Writes OUT/MEMORY.md,
OUT/memory.json and OUT/memory.png, and stops every process it started.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compare import PY, BenchError, Raftkv, http_json, loadavg, proc_status, stop_on_signals

SEGMENT_S = 30.0


@dataclass
class Point:
    t: float  # seconds since the load started
    rss_mib: list[float]
    disk_mib: list[float]
    last_index: int | None
    writes_per_s: float | None  # of the kvload segment that ended last
    host_busy_pct: float | None


def dir_mib(path: Path) -> float:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / f).stat().st_size
    return total / 2**20


def run_memory(args: argparse.Namespace, kvload_py: Path) -> int:
    out_dir: Path = args.out or (
        Path(tempfile.mkdtemp(prefix="raftkv-memory-")) if args.quick else Path(__file__).parent
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="raftkv-memory-work-"))
    minutes = 1.0 if args.quick else args.minutes
    rk = Raftkv("raftkv", "http-kv", "raftkv, fsync on", data_dir=work / "raftkv")
    rk.base_port = args.raftkv_port
    points: list[Point] = []
    segments: list[dict[str, Any]] = []
    kv_cmd = ""
    ok = False
    with stop_on_signals():
        try:
            print("memory: starting raftkv", file=sys.stderr, flush=True)
            rk.start()
            pids = rk.pids()
            url = rk.leader_url()
            base = rk.leader_url().rsplit("/v1", 1)[0]
            t0 = time.monotonic()
            end = t0 + minutes * 60
            stop = threading.Event()

            def load() -> None:
                nonlocal kv_cmd
                while not stop.is_set() and time.monotonic() < end - 2:
                    dur = min(SEGMENT_S, end - time.monotonic() - 0.5)
                    cmd = [PY, str(kvload_py), "--api", "http-kv", "--endpoints", url]
                    cmd += ["--op", "put", "--concurrency", str(args.clients)]
                    cmd += ["--duration", f"{dur:.1f}", "--warmup", "0.5"]
                    cmd += ["--server-pids", ",".join(map(str, pids))]
                    kv_cmd = shlex.join(["python", *cmd[1:]])
                    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
                    if proc.returncode != 0 or not proc.stdout.strip():
                        print(f"memory: kvload failed: {proc.stderr[-500:]}", file=sys.stderr)
                        return
                    doc = json.loads(proc.stdout.strip().splitlines()[-1])
                    doc["t_end"] = time.monotonic() - t0
                    segments.append(doc)

            loader = threading.Thread(target=load, daemon=True)
            loader.start()
            next_sample = t0
            while time.monotonic() < end and loader.is_alive():
                now = time.monotonic()
                if now >= next_sample:
                    last = None
                    with contextlib.suppress(OSError, ValueError):
                        last = int(http_json(base + "/v1/status", 2.0)["last_index"])
                    seg = segments[-1] if segments else {}
                    p = Point(
                        round(now - t0, 1),
                        [(proc_status(pid, "VmRSS") or 0) / 1024 for pid in pids],
                        [dir_mib(rk.data_dir / f"n{i + 1}") for i in range(3)],
                        last,
                        seg.get("ops_per_s"),
                        seg.get("host_cpu_busy_pct"),
                    )
                    points.append(p)
                    print(
                        f"memory: {p.t:6.0f}s  RSS "
                        + " ".join(f"{r:6.1f}" for r in p.rss_mib)
                        + "  MiB   data dir "
                        + " ".join(f"{d:6.1f}" for d in p.disk_mib)
                        + f"  MiB   log index {p.last_index}   writes/s {p.writes_per_s}",
                        file=sys.stderr,
                        flush=True,
                    )
                    next_sample += args.sample
                time.sleep(min(1.0, max(0.05, next_sample - time.monotonic())))
            stop.set()
            loader.join(timeout=SEGMENT_S + 30)
            ok = len(points) >= 2
        except KeyboardInterrupt:
            print("memory: interrupted; stopping everything", file=sys.stderr)
        except (BenchError, subprocess.TimeoutExpired, OSError) as e:
            print(f"memory: {e}", file=sys.stderr)
        finally:
            if rk.started:
                print("memory: stopping raftkv", file=sys.stderr, flush=True)
                rk.stop()
            if args.work_dir is None:
                shutil.rmtree(work, ignore_errors=True)
    if not ok:
        return 1
    meta = {
        "command": shlex.join(["bench/compare", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "minutes": minutes,
        "clients": args.clients,
        "loadavg_end": loadavg(),
        "cluster": rk.commands,
        "kvload": kv_cmd,
    }
    doc = {"meta": meta, "points": [p.__dict__ for p in points], "segments": segments}
    (out_dir / "memory.json").write_text(json.dumps(doc, indent=1))
    chart = write_memory_chart(out_dir, points)
    report = write_memory_report(out_dir, points, segments, meta, chart)
    print(report.read_text())
    print(f"memory: wrote {report}", file=sys.stderr)
    return 0


def verdict(points: list[Point]) -> tuple[str, float, float]:
    """(text, RSS growth MiB over the second half, over the first half) of the largest node."""
    mid = points[len(points) // 2]
    first, last = points[0], points[-1]
    top = max(range(3), key=lambda i: last.rss_mib[i])
    second = last.rss_mib[top] - mid.rss_mib[top]
    first_half = mid.rss_mib[top] - first.rss_mib[top]
    bounded = second <= max(8.0, 0.1 * mid.rss_mib[top])
    text = (
        "bounded: RSS levels off (second half grew "
        if bounded
        else "NOT bounded: RSS keeps growing (second half grew "
    )
    text += f"{second:+.1f} MiB, first half {first_half:+.1f} MiB, on the largest node)"
    return text, second, first_half


def write_memory_report(
    out_dir: Path,
    points: list[Point],
    segments: list[dict[str, Any]],
    meta: dict[str, Any],
    chart: str | None,
) -> Path:
    text, _, _ = verdict(points)
    writes = [s["ops_per_s"] for s in segments]
    total = sum(s["ops_per_s"] * s["duration"] for s in segments)
    lines = [
        "# raftkv memory under a long write load",
        "",
        f"Produced by `{meta['command']}` on {meta['date']}. Do not edit by hand: rerun it.",
        "",
        f"3 nodes on 127.0.0.1, fsync on; kvload.py with {meta['clients']} clients writing "
        f"256-byte values over 10,000 keys for {meta['minutes']:g} min in "
        f"{SEGMENT_S:g} s segments ({total:,.0f} writes, "
        f"{min(writes, default=0):,.0f}..{max(writes, default=0):,.0f} writes/s per segment). "
        f"Load average at the end: {meta['loadavg_end']}.",
        "",
        f"**Verdict: {text}.** Data dir = WAL segments + snapshots + hard state on disk.",
        "",
        "| t (s) | RSS n1 / n2 / n3 (MiB) | data dir n1 / n2 / n3 (MiB) | log index "
        "| writes/s (last segment) | host busy |",
        "|---:|---|---|---:|---:|---:|",
    ]
    step = max(1, len(points) // 20)
    shown = points[::step] + ([points[-1]] if (len(points) - 1) % step else [])
    for p in shown:
        w = f"{p.writes_per_s:,.0f}" if p.writes_per_s is not None else "-"
        busy = f"{p.host_busy_pct:.0f}%" if p.host_busy_pct is not None else "-"
        lines.append(
            f"| {p.t:,.0f} | {' / '.join(f'{r:.1f}' for r in p.rss_mib)} | "
            f"{' / '.join(f'{d:.1f}' for d in p.disk_mib)} | {p.last_index or '-'} | {w} "
            f"| {busy} |"
        )
    lines += ["", "Commands:", "", "```", *meta["cluster"], meta["kvload"] + "   # repeated", "```"]
    if chart:
        lines += ["", f"![memory]({chart})"]
    path = out_dir / "MEMORY.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_memory_chart(out_dir: Path, points: list[Point]) -> str | None:
    try:
        import matplotlib  # noqa: PLC0415 (optional)

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ts = [p.t / 60 for p in points]
    for i in range(3):
        ax1.plot(ts, [p.rss_mib[i] for p in points], label=f"n{i + 1}")
        ax2.plot(ts, [p.disk_mib[i] for p in points], label=f"n{i + 1}")
    ax1.set_title("RSS per node", fontsize=10)
    ax1.set_ylabel("MiB")
    ax2.set_title("data directory per node (WAL + snapshots)", fontsize=10)
    ax2.set_ylabel("MiB")
    for ax in (ax1, ax2):
        ax.set_xlabel("minutes of write load")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
    fig.tight_layout()
    name = "memory.png"
    fig.savefig(out_dir / name, dpi=110)
    plt.close(fig)
    return name
