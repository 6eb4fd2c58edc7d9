"""Fixtures of the disk tests: small real volumes (see volumes.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .volumes import tmpfs

Volume = Callable[[str, int], Path]


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Volume]:
    """volume(name, size_mb): a tmpfs of that size at tmp_path/name, unmounted at the end."""
    with contextlib.ExitStack() as stack:

        def make(name: str, size_mb: int) -> Path:
            return stack.enter_context(tmpfs(tmp_path / name, size_mb))

        yield make
