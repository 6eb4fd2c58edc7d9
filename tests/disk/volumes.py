"""Real small volumes: a tmpfs of a given size runs out of space for real (ENOSPC), and
posix_fallocate works on it as on ext4. Mounting needs root: CI runs as root; anywhere else
these tests are skipped, saying why."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

FILLER = "filler"


@contextlib.contextmanager
def tmpfs(path: Path, size_mb: int) -> Iterator[Path]:
    """A tmpfs of size_mb MiB mounted at path for the duration (processes using it must be
    stopped before the block ends)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs (a real small volume); CI runs as root")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(path)],
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def free_bytes(directory: Path) -> int:
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def fill(directory: Path, leave: int = 0) -> Path:
    """Take the free space of directory's filesystem, all but `leave` bytes (rounded to pages),
    with one file (directory/filler); returns it. Delete it to give the space back."""
    path = directory / FILLER
    with open(path, "ab", buffering=0) as f:
        take = free_bytes(directory) - leave
        if take > 0:
            os.posix_fallocate(f.fileno(), f.tell(), take)
        if leave == 0:  # what fallocate could not take in one piece, page by page
            with contextlib.suppress(OSError):
                while f.write(bytes(4096)):
                    pass
    if leave == 0:
        assert free_bytes(directory) == 0, f"{directory} still has free space"
    return path
