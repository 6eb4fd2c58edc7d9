"""The curated public API: raftkv.__all__ names the library API and the errors, resolves
lazily (importing raftkv alone does not load the runtime), and the package ships py.typed."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import raftkv
import raftkv.embed

ROOT = Path(__file__).resolve().parents[2]


def test_all_names_resolve_to_the_library_api() -> None:
    for name in raftkv.__all__:
        assert getattr(raftkv, name) is not None, name
    for name in raftkv.embed.__all__:
        assert name in raftkv.__all__, f"raftkv.embed.{name} is not exported by raftkv"
        assert getattr(raftkv, name) is getattr(raftkv.embed, name)
    wanted = {"StateMachine", "Node", "Replicated", "replicated", "query", "SyncNode"}
    wanted |= {"Counter", "ReplicatedDict", "LockManager", "EventKind", "LeadershipEvent"}
    assert wanted <= set(raftkv.__all__)
    assert issubclass(raftkv.CommandFailed, raftkv.RaftkvError)  # one error tree


def test_import_raftkv_is_light() -> None:
    code = "import sys, raftkv; print('raftkv.embed' in sys.modules, 'aiohttp' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "False"]
    code = "import raftkv; print(raftkv.Node.__module__)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "raftkv.embed.node"


def test_py_typed_is_shipped() -> None:
    assert (Path(raftkv.__file__).parent / "py.typed").is_file()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["raftkv"]
