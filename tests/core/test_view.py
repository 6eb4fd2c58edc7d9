"""The shells see the core only through RaftView (read-only queries): they never reach the
log, the replication progress or a method that changes the core; the driver alone does."""

from __future__ import annotations

import ast
import random
from pathlib import Path

from raftkv.core.config import Config
from raftkv.core.raft import RaftNode
from raftkv.core.types import Entry, EntryKind, HardState, Role
from raftkv.core.view import RaftView

SRC = Path(__file__).resolve().parents[2] / "src" / "raftkv"
# The core's owners: the core itself, the driver that calls into it, and the pure simulator
# and checkers that build cores directly.
OWNERS = {"core", "driver", "sim", "check"}
VIEW = {name for name in dir(RaftView) if not name.startswith("_")}


def shell_modules() -> list[Path]:
    return [p for p in sorted(SRC.rglob("*.py")) if p.relative_to(SRC).parts[0] not in OWNERS]


def reads_of_the_core(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, attribute) for every `raft.x` / `<expr>.raft.x` in tree."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        base = node.value
        if (isinstance(base, ast.Name) and base.id == "raft") or (
            isinstance(base, ast.Attribute) and base.attr == "raft"
        ):
            found.append((node.lineno, node.attr))
    return found


def test_the_view_is_what_the_shells_are_told() -> None:
    assert {"commit_index", "last_index", "status", "membership_at", "match_index"} <= VIEW
    assert not VIEW & {"log", "progress", "step", "tick", "propose", "persisted", "ready"}


def test_shells_use_only_the_view() -> None:
    offenders = []
    scanned = 0
    for path in shell_modules():
        reads = reads_of_the_core(ast.parse(path.read_text(), str(path)))
        scanned += bool(reads)
        offenders += [
            f"{path.relative_to(SRC)}:{line}: raft.{attr}"
            for line, attr in reads
            if attr not in VIEW
        ]
    assert scanned >= 6, "the scan found the shells' reads of the core"
    assert offenders == [], "shells reach past RaftView:\n" + "\n".join(offenders)


def test_the_scan_catches_a_reach_into_the_log() -> None:
    bad = ast.parse(
        "def f(node):\n"
        "    raft = node.raft\n"
        "    return raft.log.committed + node.raft.progress['b'].match\n"
    )
    assert [a for _, a in reads_of_the_core(bad) if a not in VIEW] == ["log", "progress"]


def test_a_raft_node_answers_the_view() -> None:
    raft = RaftNode(
        "a",
        ["a", "b", "c"],
        Config(),
        random.Random(0),
        hard_state=HardState(term=1, commit=1),
        entries=[Entry(1, 1, EntryKind.NOOP, b""), Entry(1, 2, EntryKind.NORMAL, b"x")],
    )
    view: RaftView = raft
    assert (view.id, view.role, view.term, view.leader) == ("a", Role.FOLLOWER, 1, None)
    assert (view.first_index, view.last_index, view.last_term) == (1, 2, 1)
    assert (view.commit_index, view.applied_index, view.snapshot_index) == (1, 0, 0)
    assert view.stable_index == 2  # what the core was built from came from the disk
    assert view.term_at(2) == 1 and view.term_at(3) is None
    assert view.entry(2).data == b"x"
    assert view.voters == ("a", "b", "c") and view.membership_at(2).voters == ("a", "b", "c")
    assert view.match_index("a") == 2 and view.match_index("b") is None  # not leading
    assert view.status().last_index == 2 and view.lost_from == 0
