"""The file system under raftkv's storage: a small interface, so the same WAL, snapshot and
recovery code runs on the real disk (OS, through the os module) and, in the simulator, on a
simulated file system that loses unsynced writes on a crash (raftkv.sim.fs.SimFs).

Semantics are POSIX's, read strictly: data written to a file survives a crash only once that
file was fsynced (or fdatasynced); a creation, rename or unlink only once its directory was
fsynced. Every call raises OSError on failure (with an errno: ENOSPC, EIO, ENOENT, ...).

OS calls the os module at call time, so tests can inject faults by patching os functions.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys
from pathlib import Path
from typing import Protocol


class File(Protocol):
    """An open file, for reading and writing at offsets."""

    def pwrite(self, data: bytes | memoryview, offset: int) -> int: ...

    def datasync(self) -> None:
        """The file's data (and what is needed to read it back) is durable on return."""

    def fsync(self) -> None: ...

    def size(self) -> int: ...

    def allocate(self, size: int) -> None:
        """Reserve space so the file holds at least size bytes (zeros beyond its data):
        posix_fallocate. ENOSPC if there is no room."""

    def close(self) -> None: ...


class Lock(Protocol):
    def release(self) -> None: ...


class FileSystem(Protocol):
    def open(self, path: Path, *, create: bool = False, truncate: bool = False) -> File: ...

    def read_bytes(self, path: Path) -> bytes: ...

    def listdir(self, path: Path) -> list[str]: ...

    def exists(self, path: Path) -> bool: ...

    def is_dir(self, path: Path) -> bool: ...

    def file_size(self, path: Path) -> int: ...

    def free_bytes(self, path: Path) -> int:
        """Bytes a writer can still allocate on path's file system (0 if unknown)."""
        ...

    def mkdir(self, path: Path) -> None:
        """Create one directory (FileExistsError if it exists)."""

    def rename(self, src: Path, dst: Path) -> None:
        """Atomically replace dst by src (same directory)."""

    def unlink(self, path: Path) -> None: ...

    def fsync_dir(self, path: Path) -> None:
        """Make the directory's entries (creations, renames, unlinks) durable."""

    def lock(self, path: Path) -> Lock | None:
        """An exclusive lock on the file at path (created if missing); None if another
        process holds it."""


class _OsFile:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def pwrite(self, data: bytes | memoryview, offset: int) -> int:
        return os.pwrite(self.fd, data, offset)

    def datasync(self) -> None:
        if sys.platform == "darwin":  # no fdatasync there; F_FULLFSYNC would be stricter still
            os.fsync(self.fd)
        else:
            os.fdatasync(self.fd)

    def fsync(self) -> None:
        os.fsync(self.fd)

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def allocate(self, size: int) -> None:
        if not hasattr(os, "posix_fallocate"):
            return
        try:
            os.posix_fallocate(self.fd, 0, size)
        except OSError as exc:
            # Where the file system cannot reserve space, appends simply grow the file.
            if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise

    def close(self) -> None:
        os.close(self.fd)


class _OsLock:
    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


class OsFileSystem:
    """The real file system."""

    def open(self, path: Path, *, create: bool = False, truncate: bool = False) -> File:
        flags = os.O_RDWR | (os.O_CREAT if create else 0) | (os.O_TRUNC if truncate else 0)
        return _OsFile(os.open(path, flags, 0o644))

    def read_bytes(self, path: Path) -> bytes:
        return path.read_bytes()

    def listdir(self, path: Path) -> list[str]:
        return os.listdir(path)

    def exists(self, path: Path) -> bool:
        return path.exists()

    def is_dir(self, path: Path) -> bool:
        return path.is_dir()

    def file_size(self, path: Path) -> int:
        return path.stat().st_size

    def free_bytes(self, path: Path) -> int:
        try:
            st = os.statvfs(path)
        except OSError:
            return 0
        return st.f_bavail * st.f_frsize

    def mkdir(self, path: Path) -> None:
        os.mkdir(path, 0o755)

    def rename(self, src: Path, dst: Path) -> None:
        os.rename(src, dst)

    def unlink(self, path: Path) -> None:
        os.unlink(path)

    def fsync_dir(self, path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def lock(self, path: Path) -> Lock | None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return _OsLock(fd)


OS: FileSystem = OsFileSystem()
