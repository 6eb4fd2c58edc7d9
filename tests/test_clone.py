"""What a clone anywhere needs (issue #17): every link of the docs points inside the repository,
what the README's commands write is ignored by git, and the README says where `raftkv` is
before it uses it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "tests/data/README.md"]
LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def _local_links(doc: Path) -> list[str]:
    targets = [m["target"] for m in LINK.finditer(doc.read_text())]
    return [t for t in targets if not re.match(r"[a-z]+:|#", t)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_point_to_files_of_the_repository(doc: Path) -> None:
    bad = []
    for target in _local_links(doc):
        path = (doc.parent / target.split("#")[0]).resolve()
        if not path.is_relative_to(ROOT) or not path.exists():
            bad.append(target)
    assert bad == [], f"{doc.name} links outside the repository or to nothing: {bad}"


def _ignored(paths: list[str]) -> set[str]:
    """The paths git ignores in this checkout (`git check-ignore`, the real rules)."""
    proc = subprocess.run(
        ["git", "-C", str(ROOT), "check-ignore", "--no-index", "--stdin"],
        input="\n".join(paths),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stderr  # 1: none of them is ignored
    return set(proc.stdout.split())


def test_what_the_readme_commands_write_is_ignored() -> None:
    written = [
        "raftkv-data/cluster.json",  # raftkv cluster up
        "raftkv-data/n1/node.log",
        "certs/ca.key",  # raftkv certs init --dir certs: private keys and tokens
        "certs/n1.key",
        "certs/tokens.txt",
        "data/n1/hardstate",  # the TLS steps' raftkv serve --data-dir data/n1
        "backup.snap",  # raftkv snapshot save backup.snap
        "chaos-report/report.json",  # make chaos
        "test-artifacts/demo/01-committed.png",
    ]
    tracked = ["tests/data/README.md", "tests/data/porcupine/jepsen/etcd_000.log"]
    ignored = _ignored(written + tracked)
    assert sorted(set(written) - ignored) == []
    assert sorted(set(tracked) & ignored) == []


def test_the_readme_says_where_raftkv_is_before_running_it() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    first_command = next(i for i, line in enumerate(lines) if line.startswith("$ raftkv "))
    before = "\n".join(lines[:first_command])
    assert "source .venv/bin/activate" in before
    assert "`.venv/bin/raftkv`" in before
