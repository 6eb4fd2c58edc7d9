"""One name per concept: no two public classes in raftkv share a name (a reader, or an import,
could take one for the other)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "raftkv"


def public_classes(root: Path) -> dict[str, list[str]]:
    """Class name -> the modules defining it at top level (private names left out)."""
    found: dict[str, list[str]] = defaultdict(list)
    for path in sorted(root.rglob("*.py")):
        for node in ast.parse(path.read_text(), str(path)).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                found[node.name].append(str(path.relative_to(root)))
    return found


def test_no_two_public_classes_share_a_name() -> None:
    classes = public_classes(SRC)
    assert len(classes) > 100, "the scan found the package's classes"
    shared = {name: where for name, where in classes.items() if len(where) > 1}
    assert shared == {}, f"one name, several classes: {shared}"
