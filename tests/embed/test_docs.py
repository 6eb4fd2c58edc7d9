"""Every Python sample of docs/library.md and of the README's library section runs as written
(in a fresh directory, in its own process), and prints what the page says it prints (the
```text block after "prints:"). The pages use fixed ports 17000-17999; each run maps them to
free ports, so that concurrent test runs on one machine do not collide."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from raftkv.devcluster.ports import free_ports

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = re.compile(
    r"```python\n(?P<code>.*?)```\n(?:\s*prints:\s*\n\s*```text\n(?P<out>.*?)```)?", re.S
)


def samples(doc: Path, section: str | None = None) -> list[tuple[str, str, str | None]]:
    text = doc.read_text()
    start, end = 0, len(text)
    if section is not None:  # only the samples under this "## " heading
        start = text.index(f"\n## {section}\n")
        end = text.find("\n## ", start + 1)
        end = len(text) if end < 0 else end
    found = []
    for m in SAMPLE.finditer(text, start, end):
        line = text.count("\n", 0, m.start()) + 1
        found.append((f"{doc.name}:{line}", m["code"], m["out"]))
    return found


PORT = re.compile(r"\b17\d{3}\b")


def with_free_ports(code: str) -> str:
    fixed = sorted(set(PORT.findall(code)))
    fresh = dict(zip(fixed, map(str, free_ports(len(fixed))), strict=True))
    return PORT.sub(lambda m: fresh[m[0]], code)


SAMPLES = samples(ROOT / "docs" / "library.md")
SAMPLES += samples(ROOT / "README.md", "Use raftkv as a library")


def test_the_pages_have_samples() -> None:
    assert sum(where.startswith("library.md") for where, _, _ in SAMPLES) >= 5
    assert any(out is not None for _, _, out in SAMPLES)
    assert any(where.startswith("README.md") for where, _, _ in SAMPLES)
    port_lines = [
        line for _, code, _ in SAMPLES for line in code.splitlines() if "127.0.0.1" in line
    ]
    assert port_lines and all(PORT.search(line) for line in port_lines)


@pytest.mark.parametrize(("where", "code", "expected"), SAMPLES, ids=[s[0] for s in SAMPLES])
def test_sample_runs(where: str, code: str, expected: str | None, tmp_path: Path) -> None:
    script = tmp_path / "sample.py"
    script.write_text(with_free_ports(code))
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"{where}:\n{proc.stdout}\n{proc.stderr}"
    if expected is not None:
        assert proc.stdout == expected, f"{where} printed:\n{proc.stdout}"
