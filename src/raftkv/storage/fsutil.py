"""Small durable-filesystem helpers over a FileSystem (storage/fs.py; the real one, OS, by
default). Every function lets OSError through: callers turn it into DiskError (or DiskFull,
see no_space)."""

from __future__ import annotations

import contextlib
import errno
from pathlib import Path

from raftkv.errors import DiskError, DiskFull
from raftkv.storage.fs import OS, File, FileSystem, Lock


def ensure_dir(path: Path, fs: FileSystem = OS) -> bool:
    """Create path and missing parents, fsyncing each new directory's parent. True if created."""
    if fs.is_dir(path):
        return False
    ensure_dir(path.parent, fs)
    try:
        fs.mkdir(path)
    except FileExistsError:
        return False
    fs.fsync_dir(path.parent)
    return True


def durable_dir(path: Path, fs: FileSystem = OS) -> None:
    """Make sure path exists as a directory and its entry in its parent is durable, even if
    someone else created it without an fsync (a node's data dir made by a launcher)."""
    if not ensure_dir(path, fs):
        fs.fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes, fs: FileSystem = OS) -> None:
    """Replace path's content with data, durably and never half-written (tmp file, fsync,
    rename, fsync of the directory). On failure the tmp file is removed again."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        f = fs.open(tmp, create=True, truncate=True)
        try:
            write_all(f, data, 0)
            f.fsync()
        finally:
            f.close()
        fs.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            fs.unlink(tmp)
        raise
    fs.fsync_dir(path.parent)


def write_error(who: str, path: Path, exc: OSError, fs: FileSystem = OS) -> DiskError:
    """The error for a file that could not be written: DiskFull when out of space."""
    cls = DiskFull if no_space(exc) else DiskError
    free = fs.free_bytes(path.parent if fs.exists(path.parent) else Path("/"))
    return cls(f"{who}: cannot write {path}: {exc.strerror or exc} ({mib(free)} free)", str(path))


def write_all(f: File, data: bytes | memoryview, offset: int) -> None:
    """pwrite until every byte is written (a short write is retried, zero progress is EIO)."""
    view = memoryview(data)
    while view:
        n = f.pwrite(view, offset)
        if n <= 0:
            raise OSError(errno.EIO, "pwrite made no progress")
        view = view[n:]
        offset += n


def no_space(exc: OSError) -> bool:
    """The filesystem (or a quota) has no room: a retry may succeed once space is freed."""
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


def free_bytes(path: Path, fs: FileSystem = OS) -> int:
    """Bytes an unprivileged writer can still allocate on path's filesystem (0 if unknown)."""
    return fs.free_bytes(path)


def mib(nbytes: int) -> str:
    """A size for messages: '64 MiB', '12.3 MiB', '512 KiB'."""
    if nbytes >= 1024 * 1024:
        value = nbytes / (1024 * 1024)
        return f"{value:.0f} MiB" if value == int(value) or value >= 10 else f"{value:.1f} MiB"
    return f"{nbytes / 1024:.0f} KiB"


class DirLock:
    """An exclusive lock on DIR/LOCK: two processes must never write the same log."""

    def __init__(self, directory: Path, fs: FileSystem = OS) -> None:
        self.path = directory / "LOCK"
        lock = fs.lock(self.path)
        if lock is None:
            raise DiskError(f"{directory} is in use by another process (lock {self.path})")
        self._lock: Lock | None = lock

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
