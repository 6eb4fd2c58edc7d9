"""The functional core imports no IO, clock, threads or global randomness (DESIGN.md rules)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "raftkv"
PURE = ["core", "kv", "driver", "sim", "check", "wire.py", "packing.py"]
FORBIDDEN_MODULES = {"asyncio", "socket", "threading", "time", "os", "subprocess", "selectors"}


def _pure_files() -> list[Path]:
    files: list[Path] = []
    for name in PURE:
        path = SRC / name
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return [f for f in files if f.exists()]


def _violations(tree: ast.AST) -> list[str]:
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module:
            root = node.module.split(".")[0]
            if root in FORBIDDEN_MODULES:
                found.append(node.module)
            if root == "random" and any(a.name != "Random" for a in node.names):
                found.append(f"from random import {[a.name for a in node.names]}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "random"
            and node.func.attr != "Random"
        ):
            found.append(f"random.{node.func.attr}() (module-level random)")
    return found


@pytest.mark.parametrize("path", _pure_files(), ids=lambda p: str(p.relative_to(SRC)))
def test_pure_module_has_no_io(path: Path) -> None:
    assert _violations(ast.parse(path.read_text())) == []


def test_the_check_can_fail() -> None:
    bad = "import time\nfrom os import path\nimport random\nx = random.random()\n"
    assert len(_violations(ast.parse(bad))) == 3


def test_pure_packages_exist() -> None:
    assert len(_pure_files()) > 3
