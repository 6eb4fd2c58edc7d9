"""The FUSE side: libfuse 3's high-level API (through mfusepy) calling into FaultState.

Mounted single-threaded (one request at a time) with the kernel's caches off: no entry,
negative or attribute caching and direct I/O on every file, so after a power cut the next
lookup, stat or read sees what the backing directory kept, not what the kernel remembered.
Unlinked files stay reachable through open handles (hard_remove: no .fuse_hidden renames).
"""

from __future__ import annotations

import errno
import os
from typing import Any

import mfusepy

from raftkv.faultfs.state import FaultState


class FaultOps(mfusepy.Operations):  # type: ignore[misc]
    use_ns = True  # timestamps in nanoseconds

    def __init__(self, state: FaultState) -> None:
        self.state = state
        self.mounted = False
        self._flags: dict[int, int] = {}  # fh -> open flags (O_APPEND)

    # --- lifecycle ------------------------------------------------------------------------

    def init_with_config(self, conn_info: Any, config_3: Any) -> None:
        if config_3 is not None:
            config_3.entry_timeout = 0.0
            config_3.negative_timeout = 0.0
            config_3.attr_timeout = 0.0
            config_3.hard_remove = 1
            config_3.direct_io = 1
        self.mounted = True

    def destroy(self, path: str) -> None:
        self.mounted = False

    # --- attributes and directories -------------------------------------------------------

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        return self.state.attrs(self.state.node(path, fh))

    def readdir(self, path: str, fh: int) -> list[str]:
        with self.state.lock:
            node = self.state.node(path, fh)
            names = list(getattr(node, "entries", {}))
        return [".", "..", *names]

    def opendir(self, path: str) -> int:
        return self.state.open(path)

    def releasedir(self, path: str, fh: int) -> int:
        self.state.release(fh)
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        self.state.fsync(path, fh)
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        self.state.mkdir(path, mode)
        return 0

    def rmdir(self, path: str) -> int:
        self.state.rmdir(path)
        return 0

    def unlink(self, path: str) -> int:
        self.state.unlink(path)
        return 0

    def rename(self, old: str, new: str) -> int:
        self.state.rename(old, new)
        return 0

    def chmod(self, path: str, mode: int) -> int:
        self.state.chmod(path, None, mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        return 0  # ownership is not modelled

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        return 0  # timestamps follow writes only

    def link(self, target: str, source: str) -> int:
        raise mfusepy.FuseOSError(errno.EPERM)

    def symlink(self, target: str, source: str) -> int:
        raise mfusepy.FuseOSError(errno.EPERM)

    def statfs(self, path: str) -> dict[str, int]:
        return self.state.statfs()

    # --- files ----------------------------------------------------------------------------

    def create(self, path: str, mode: int, flags: int = 0) -> int:
        fh = self.state.create(path, mode)
        self._opened(path, fh, flags)
        return fh

    def open(self, path: str, flags: int) -> int:
        fh = self.state.open(path)
        self._opened(path, fh, flags)
        return fh

    def _opened(self, path: str, fh: int, flags: int) -> None:
        self._flags[fh] = flags
        if flags & os.O_TRUNC:  # libfuse 3 passes O_TRUNC to open (atomic_o_trunc)
            self.state.truncate(path, fh, 0)

    def release(self, path: str, fh: int) -> int:
        self._flags.pop(fh, None)
        self.state.release(fh)
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0  # close() makes nothing durable

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return self.state.read(path, fh, offset, size)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        if self._flags.get(fh, 0) & os.O_APPEND:
            offset = self.state.node(path, fh).size if fh else offset  # type: ignore[union-attr]
        return self.state.write(path, fh, offset, data)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        self.state.truncate(path, fh, length)
        return 0

    def fallocate(self, path: str, mode: int, offset: int, size: int, fh: int) -> int:
        self.state.fallocate(path, fh, mode, offset, size)
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        self.state.fsync(path, fh)
        return 0


def mount(state: FaultState, ops: FaultOps, mountpoint: str) -> None:
    """Serve the mount until it is unmounted (fusermount3 -u) or the process gets SIGTERM."""
    mfusepy.FUSE(
        ops,
        mountpoint,
        foreground=True,
        nothreads=True,
        fsname="faultfs",
        subtype="faultfs",
        hard_remove=True,
        direct_io=True,
    )
