"""Storage micro-benchmark: LogStorage.save against the raw fdatasync floor of this disk.

    python bench/storage_bench.py [--seconds N] [--json] [--dir DIR] [--batch 64] [--size 100]

Phases, all in one run on the same filesystem: the floor (append SIZE bytes + fdatasync on a temp
file), save() of one SIZE-byte entry, save() of BATCH entries, and the floor again (the disk of a
shared machine drifts; the ratio uses the mean of both floor runs). Every save() is durable.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from raftkv.core.types import Entry
from raftkv.storage import LogStorage


@dataclass
class Phase:
    name: str
    ops: int  # fdatasync loops or save() calls
    appends: int  # entries (or 100-byte writes for the floor)
    fsyncs: int
    seconds: float
    p50_us: float
    p99_us: float

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds

    @property
    def appends_per_s(self) -> float:
        return self.appends / self.seconds

    @property
    def fsyncs_per_s(self) -> float:
        return self.fsyncs / self.seconds


def _percentiles(latencies: list[float]) -> tuple[float, float]:
    if len(latencies) < 2:
        value = latencies[0] * 1e6 if latencies else 0.0
        return value, value
    cuts = statistics.quantiles(latencies, n=100)
    return cuts[49] * 1e6, cuts[98] * 1e6


def floor(directory: Path, seconds: float, size: int, name: str) -> Phase:
    """The cheapest durable append this disk can do from Python: write + fdatasync."""
    path = directory / f"{name}.dat"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    data = b"x" * size
    latencies: list[float] = []
    try:
        start = time.perf_counter()
        deadline = start + seconds
        now = start
        while now < deadline:
            os.write(fd, data)
            os.fdatasync(fd)
            after = time.perf_counter()
            latencies.append(after - now)
            now = after
        elapsed = now - start
    finally:
        os.close(fd)
        path.unlink()
    p50, p99 = _percentiles(latencies)
    n = len(latencies)
    return Phase(name, n, n, n, elapsed, p50, p99)


def saves(directory: Path, seconds: float, size: int, batch: int, name: str) -> Phase:
    storage, _ = LogStorage.open(directory / name)
    data = b"v" * size
    latencies: list[float] = []
    try:
        fsyncs_before = storage.stats.fsyncs
        index = storage.last_index()
        start = time.perf_counter()
        deadline = start + seconds
        now = start
        while now < deadline:
            entries = [Entry(1, index + i, data=data) for i in range(1, batch + 1)]
            storage.save(None, entries)
            index += batch
            after = time.perf_counter()
            latencies.append(after - now)
            now = after
        elapsed = now - start
        fsyncs = storage.stats.fsyncs - fsyncs_before
    finally:
        storage.close()
    p50, p99 = _percentiles(latencies)
    return Phase(name, len(latencies), len(latencies) * batch, fsyncs, elapsed, p50, p99)


def run(directory: Path, seconds: float, size: int, batch: int) -> dict[str, object]:
    phases = [
        floor(directory, seconds / 2, size, "floor_before"),
        saves(directory, seconds, size, 1, "save_single"),
        saves(directory, seconds, size, batch, f"save_batch_{batch}"),
        floor(directory, seconds / 2, size, "floor_after"),
    ]
    floor_rate = (phases[0].ops_per_s + phases[3].ops_per_s) / 2
    single, batched = phases[1], phases[2]
    return {
        "directory": str(directory),
        "entry_bytes": size,
        "batch": batch,
        "floor_fsyncs_per_s": floor_rate,
        "phases": [
            {
                **asdict(p),
                "ops_per_s": p.ops_per_s,
                "appends_per_s": p.appends_per_s,
                "fsyncs_per_s": p.fsyncs_per_s,
            }
            for p in phases
        ],
        "ratios": {
            "single_appends_vs_floor": single.appends_per_s / floor_rate,
            "single_fsyncs_vs_floor": single.fsyncs_per_s / floor_rate,
            "batch_appends_vs_floor": batched.appends_per_s / floor_rate,
            "batch_fsyncs_vs_floor": batched.fsyncs_per_s / floor_rate,
            "fsyncs_per_save_single": single.fsyncs / max(1, single.ops),
            "fsyncs_per_save_batch": batched.fsyncs / max(1, batched.ops),
        },
    }


def render(result: dict[str, object]) -> str:
    phases = result["phases"]
    ratios = result["ratios"]
    assert isinstance(phases, list) and isinstance(ratios, dict)
    lines = [
        f"storage bench in {result['directory']} ({result['entry_bytes']}-byte entries)",
        f"{'phase':<16}{'ops/s':>10}{'appends/s':>12}{'fsyncs/s':>10}{'p50 us':>9}{'p99 us':>9}",
    ]
    for p in phases:
        lines.append(
            f"{p['name']:<16}{p['ops_per_s']:>10.0f}{p['appends_per_s']:>12.0f}"
            f"{p['fsyncs_per_s']:>10.0f}{p['p50_us']:>9.0f}{p['p99_us']:>9.0f}"
        )
    lines += [
        f"floor (mean of both runs): {result['floor_fsyncs_per_s']:.0f} fdatasyncs/s",
        f"single save : appends/s = {ratios['single_appends_vs_floor']:.2f}x floor, "
        f"fsyncs/s = {ratios['single_fsyncs_vs_floor']:.2f}x floor, "
        f"{ratios['fsyncs_per_save_single']:.3f} fsyncs/save",
        f"batch of {result['batch']}: appends/s = {ratios['batch_appends_vs_floor']:.1f}x floor, "
        f"fsyncs/s = {ratios['batch_fsyncs_vs_floor']:.2f}x floor, "
        f"{ratios['fsyncs_per_save_batch']:.3f} fsyncs/save",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0, help="per save phase (floor: half)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: tmp)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=100)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="raftkv-storage-bench-", dir=args.dir) as tmp:
        result = run(Path(tmp), args.seconds, args.size, args.batch)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
