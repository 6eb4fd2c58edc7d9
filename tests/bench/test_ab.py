"""bench/ab.py: the A/B verdict from paired rounds (bench/compare --baseline-src, --pool)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import ab  # noqa: E402


def sample(system: str, load: str, rnd: int, ops: float, p50: float) -> dict[str, Any]:
    return {"system": system, "load": load, "round": rnd, "doc": {"ops_per_s": ops, "p50_ms": p50}}


def run(pairs: list[tuple[float, float]], load: str = "writes64") -> list[dict[str, Any]]:
    """Rounds of (raftkv, baseline) figures; for put1 the figures are p50s."""
    out = []
    for i, (a, b) in enumerate(pairs):
        if load == "put1":
            out += [sample("raftkv", load, i, 1.0, a), sample("baseline", load, i, 1.0, b)]
        else:
            out += [sample("raftkv", load, i, a, 1.0), sample("baseline", load, i, b, 1.0)]
    return out


def test_ratios_pair_rounds_and_favor_raftkv_above_one() -> None:
    samples = run([(110, 100), (90, 100)]) + run([(1.0, 1.2)], "put1")
    samples.append(sample("raftkv", "writes64", 7, 500, 1.0))  # no baseline in round 7
    pairs = ab.paired_ratios(samples)
    assert pairs["writes64"] == pytest.approx([1.1, 0.9])
    assert pairs["put1"] == pytest.approx([1.2])  # a lower p50 is better


def test_verdicts_can_say_each_thing() -> None:
    better = ab.verdict("writes64", [1.10, 1.12, 1.08, 1.11, 1.09])
    worse = ab.verdict("writes64", [0.90, 0.88, 0.91, 0.89, 0.92])
    noisy_low = ab.verdict("writes64", [0.7, 1.3, 0.9, 1.2, 0.8, 0.95, 1.1])
    assert (better.text, worse.text, noisy_low.text) == (
        "better",
        "worse",
        "worse, within the noise",
    )
    assert ab.verdict("writes64", [0.8, 1.0, 1.2]).text == "not worse"
    assert ab.verdict("writes64", [1.3, 1.2]).text == "too few rounds (at least 3)"
    assert worse.low <= worse.median <= worse.high < 1.0
    assert ab.verdict("writes64", list(noisy_low.ratios)) == noisy_low  # fixed seed
    with pytest.raises(ValueError):
        ab.verdict("writes64", [])


def test_compare_pools_the_rounds_of_several_runs(tmp_path: Path) -> None:
    files = []
    runs: list[list[tuple[float, float]]] = [[(90, 100), (95, 100)], [(120, 100)]]
    for i, pairs in enumerate(runs):
        path = tmp_path / f"r{i}.json"
        path.write_text(json.dumps({"samples": run(pairs)}))
        files.append(str(path))
    done = subprocess.run(
        [sys.executable, "bench/compare.py", "--pool", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    row = next(line for line in done.stdout.splitlines() if line.startswith("| writes"))
    assert row.split("|")[2].strip() == "3"  # rounds from both files
    assert row.split("|")[3].strip() == "0.950"
    assert "0.90 0.95 1.20" in row
    missing = subprocess.run(
        [sys.executable, "bench/compare.py", "--pool", str(tmp_path / "nope.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 2 and "cannot read" in missing.stderr
