"""bench/checker_bench.py runs and reports (a smoke test of its quickest histories; the figures
it measures are not checked here: `make bench-checker` is the benchmark)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_checker_benchmark_reports_the_knossos_histories(tmp_path: Path) -> None:
    out = tmp_path / "CHECKER.md"
    done = subprocess.run(
        [sys.executable, "bench/checker_bench.py", "--only", "knossos-9", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = {
        line.split("|")[1].strip(): line.split("|")[4].strip()
        for line in out.read_text().splitlines()
        if line.startswith("| knossos")
    }
    assert rows == {"knossos-9-stale": "illegal", "knossos-9-ok": "ok"}
    assert "knossos-9-stale" in done.stdout
