"""Small durable-filesystem helpers. Every function lets OSError through: callers turn it into
DiskError (or DiskFull, see no_space). Calls go through the os module at call time so tests
can inject faults."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
from pathlib import Path

from raftkv.errors import DiskError, DiskFull


def datasync(fd: int) -> None:
    """Make the file's data (and the metadata needed to read it back) durable."""
    if sys.platform == "darwin":  # no fdatasync there; F_FULLFSYNC would be stricter still
        os.fsync(fd)
    else:
        os.fdatasync(fd)


def fsync_dir(path: Path) -> None:
    """Make the directory's entries (creations, renames, unlinks) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(path: Path) -> bool:
    """Create path and missing parents, fsyncing each new directory's parent. True if created."""
    if path.is_dir():
        return False
    ensure_dir(path.parent)
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        return False
    fsync_dir(path.parent)
    return True


def atomic_write(path: Path, data: bytes) -> None:
    """Replace path's content with data, durably and never half-written (tmp file, fsync,
    rename, fsync of the directory). On failure the tmp file is removed again."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def write_error(who: str, path: Path, exc: OSError) -> DiskError:
    """The error for a file that could not be written: DiskFull when out of space."""
    cls = DiskFull if no_space(exc) else DiskError
    free = free_bytes(path.parent if path.parent.exists() else Path("/"))
    return cls(f"{who}: cannot write {path}: {exc.strerror or exc} ({mib(free)} free)", str(path))


def write_all(fd: int, data: bytes, offset: int) -> None:
    """pwrite until every byte is written (a short write is retried, zero progress is EIO)."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        if n <= 0:
            raise OSError(errno.EIO, "pwrite made no progress")
        view = view[n:]
        offset += n


def no_space(exc: OSError) -> bool:
    """The filesystem (or a quota) has no room: a retry may succeed once space is freed."""
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer can still allocate on path's filesystem (0 if unknown)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


def mib(nbytes: int) -> str:
    """A size for messages: '64 MiB', '12.3 MiB', '512 KiB'."""
    if nbytes >= 1024 * 1024:
        value = nbytes / (1024 * 1024)
        return f"{value:.0f} MiB" if value == int(value) or value >= 10 else f"{value:.1f} MiB"
    return f"{nbytes / 1024:.0f} KiB"


def preallocate(fd: int, size: int) -> None:
    """Reserve size bytes (reads as zeros) so appends do not grow the file. Best effort only
    where the filesystem cannot do it; ENOSPC and real IO errors still propagate."""
    if not hasattr(os, "posix_fallocate"):
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise


class DirLock:
    """An exclusive flock on DIR/LOCK: two processes must never write the same log."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "LOCK"
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise DiskError(
                f"{directory} is in use by another process (lock {self.path})"
            ) from None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
