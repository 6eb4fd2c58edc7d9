"""A faultfs mount per test: tmp/mnt over tmp/backing, control socket in a short temp dir."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from raftkv.faultfs import FaultMount


def fuse_missing() -> str | None:
    """Why FUSE cannot run here (None: it can). A missing /dev/fuse is the kernel's (skip);
    a missing fusermount3 is an install step (.ci/run installs Debian's fuse3): fail."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse on this kernel"
    return None


@pytest.fixture
def fs(tmp_path: Path) -> Iterator[FaultMount]:
    if (why := fuse_missing()) is not None:
        pytest.skip(why)
    assert shutil.which("fusermount3"), "fusermount3 missing: apt-get install fuse3"
    sock_dir = Path(tempfile.mkdtemp(prefix="ffs-"))
    mount = FaultMount(tmp_path / "mnt", tmp_path / "backing", sock_dir / "control.sock", seed=7)
    with mount:
        yield mount
    shutil.rmtree(sock_dir, ignore_errors=True)
