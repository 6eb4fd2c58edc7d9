"""`raftkv serve` whose WAL fsync fails on command, and which tells on any retry of it.

    python fsync_fault_node.py CONTROL_DIR serve --id ... (the `raftkv` arguments)

Once CONTROL_DIR/fail-fsync exists, the next fdatasync of a WAL segment raises EIO (as a disk
whose write-back failed does). From then on, any fsync or fdatasync of that same file (same fd
and inode) is appended to CONTROL_DIR/retries: there must be none (a failed fsync is never
retried: the kernel may have dropped the dirty pages, so a retry could "succeed" for data that
is not on disk). Faults enter where storage/fsutil.py makes its calls, through the os module.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from raftkv.cli import main

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

control = Path(sys.argv[1])
failed: set[tuple[int, int]] = set()  # (fd, inode) whose fsync failed


def _identity(fd: int) -> tuple[int, int]:
    return fd, os.fstat(fd).st_ino


def _before(fd_like: FileDescriptorLike, name: str) -> None:
    """Record a retry, or fail the first WAL fdatasync once asked to."""
    fd = fd_like if isinstance(fd_like, int) else fd_like.fileno()
    if failed and _identity(fd) in failed:
        with open(control / "retries", "a") as f:
            f.write(f"{name}({fd}) of {os.readlink(f'/proc/self/fd/{fd}')}\n")
    elif name == "fdatasync" and not failed and (control / "fail-fsync").exists():
        target = os.readlink(f"/proc/self/fd/{fd}")
        if "/raft/wal-" in target:
            failed.add(_identity(fd))
            (control / "failed").write_text(target + "\n")
            raise OSError(errno.EIO, "Input/output error")


_real_fdatasync, _real_fsync = os.fdatasync, os.fsync


def fdatasync(fd: FileDescriptorLike) -> None:
    _before(fd, "fdatasync")
    _real_fdatasync(fd)


def fsync(fd: FileDescriptorLike) -> None:
    _before(fd, "fsync")
    _real_fsync(fd)


os.fdatasync = fdatasync
os.fsync = fsync
sys.exit(main(sys.argv[2:]))
