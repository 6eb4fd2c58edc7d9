"""The examples run as written (the commands the README and docs/library.md give), print what
they promise and exit by themselves."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def run(name: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_the_readme_and_docs_name_these_commands() -> None:
    for doc in (ROOT / "README.md", ROOT / "docs" / "library.md"):
        text = doc.read_text()
        for name in ("replicated_counter.py", "job_scheduler.py"):
            assert f"python examples/{name}" in text, f"{doc.name} does not show {name}"
    commands = re.findall(r"python (examples/\S+\.py)", (ROOT / "README.md").read_text())
    assert commands and all((ROOT / c).is_file() for c in commands)


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


@pytest.mark.parametrize(
    "flags",
    [
        ["--system=raftkv"],
        ["--system=raftkv", "--no-fsync"],
        ["--system=pysyncobj", "--no-batch"],
    ],
    ids=["raftkv", "raftkv-no-fsync", "pysyncobj"],
)
def test_bench_counter_short(flags: list[str]) -> None:
    if "--system=pysyncobj" in flags:
        pytest.importorskip("pysyncobj")
    out = run("bench_counter.py", *flags, "--duration=0.5", "--concurrency=4")
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["ops"] > 0
    if "--system=pysyncobj" in flags:  # its replicas are read locally, after a 2 s pause
        assert summary["acknowledged"] in summary["replica_values"]
    else:  # linearizable reads: every replica holds exactly the acknowledged increments
        assert summary["replica_values"] == [summary["acknowledged"]] * 3
