"""The examples run as written, print what they promise and exit by themselves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(name: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_replicated_counter_example() -> None:
    out = run("replicated_counter.py")
    assert out.count("counter = 150") == 3
    assert "all 3 replicas agree on 150" in out


def test_job_scheduler_example() -> None:
    out = run("job_scheduler.py")
    assert "killing the leader" in out
    assert "all 12 jobs done" in out
    assert out.count("became leader") >= 2
    assert "the jobs survived the leader's death" in out
