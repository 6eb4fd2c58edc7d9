"""SimFs: an in-memory file system (raftkv.storage.fs.FileSystem) that forgets, for the
simulator. The real LogStorage runs on it, so the real WAL code meets simulated crashes.

What a crash keeps follows POSIX read strictly: a file's data survives once that file was
fsynced or fdatasynced, a creation, rename or unlink once its directory was fsynced. Of the
changes made since, a crash keeps a random prefix, in the order they were made (a page cache
that wrote some of them back on its own), and the first change it drops may survive torn: a
random prefix of its bytes. Each file and each directory draws its own prefix. With
writeback="subset" a file keeps a random subset of its changes instead (a page cache writes
back any dirty pages, in any order): holes, with later writes after them.

Faults: fail_syncs makes the next file syncs fail with EIO the way Linux does since 4.13: the
data that sync was to make durable stays readable (until a crash) but is never written back,
and a later sync reports success without it. corrupt() damages data that was synced (a bad
sector, a misdirected write).

Pure: no real IO; randomness comes from the Random passed to crash().
"""

from __future__ import annotations

import errno
import random
from dataclasses import dataclass, field
from pathlib import Path

_Op = tuple[str, int, bytes]  # ("write", offset, data) | ("size", n, b"") | ("truncate", n, b"")


def _apply(buf: bytearray, op: _Op) -> None:
    kind, at, data = op
    if kind == "write":
        if len(buf) < at:
            buf.extend(bytes(at - len(buf)))
        buf[at : at + len(data)] = data
    elif kind == "size":  # fallocate: grow (zeros), never shrink
        if len(buf) < at:
            buf.extend(bytes(at - len(buf)))
    else:  # truncate
        del buf[at:]


@dataclass(eq=False)
class _Inode:
    data: bytearray = field(default_factory=bytearray)  # what reads see
    durable: bytearray = field(default_factory=bytearray)  # what survives a crash
    ops: list[_Op] = field(default_factory=list)  # unsynced changes, oldest first

    def change(self, op: _Op) -> None:
        self.ops.append(op)
        _apply(self.data, op)

    def sync(self) -> None:
        for op in self.ops:
            _apply(self.durable, op)
        self.ops.clear()

    def doom(self) -> None:
        """Its sync failed: what was pending stays visible but never becomes durable."""
        self.ops.clear()

    def crash(self, rng: random.Random, subset: bool) -> None:
        ops = self.ops
        if subset:
            ops = [op for op in ops if rng.random() < 0.5]  # any pages, in any order
        kept = rng.randrange(len(ops) + 1)
        for op in ops[:kept]:
            _apply(self.durable, op)
        if kept < len(ops) and ops[kept][0] == "write" and rng.random() < 0.5:
            kind, at, data = ops[kept]
            _apply(self.durable, (kind, at, data[: rng.randrange(len(data) + 1)]))
        self.ops.clear()
        self.data = bytearray(self.durable)


_DirOp = tuple[str, str, str]  # ("link", name, "") | ("unlink", name, "") | ("rename", a, b)


@dataclass(eq=False)
class _Dir:
    entries: dict[str, _Inode | _Dir] = field(default_factory=dict)
    durable: dict[str, _Inode | _Dir] = field(default_factory=dict)
    ops: list[tuple[_DirOp, _Inode | _Dir | None]] = field(default_factory=list)

    def change(self, op: _DirOp, node: _Inode | _Dir | None = None) -> None:
        self.ops.append((op, node))

    def sync(self) -> None:
        for op, node in self.ops:
            _apply_dir(self.durable, op, node)
        self.ops.clear()

    def crash(self, rng: random.Random) -> None:
        kept = rng.randrange(len(self.ops) + 1)
        for op, node in self.ops[:kept]:
            _apply_dir(self.durable, op, node)
        self.ops.clear()
        self.entries = dict(self.durable)


def _apply_dir(names: dict[str, _Inode | _Dir], op: _DirOp, node: _Inode | _Dir | None) -> None:
    kind, a, b = op
    if kind == "link":
        assert node is not None
        names[a] = node
    elif kind == "unlink":
        names.pop(a, None)
    elif a in names:  # rename
        names[b] = names.pop(a)


def _enoent(path: Path) -> OSError:
    return FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))


class SimFile:
    def __init__(self, fs: SimFs, inode: _Inode) -> None:
        self._fs = fs
        self._inode = inode

    def pwrite(self, data: bytes | memoryview, offset: int) -> int:
        data = bytes(data)
        self._fs.take_space(offset + len(data) - len(self._inode.data))
        self._inode.change(("write", offset, data))
        return len(data)

    def datasync(self) -> None:
        try:
            self._fs.before_sync()
        except OSError:
            self._inode.doom()
            raise
        self._inode.sync()

    fsync = datasync

    def size(self) -> int:
        return len(self._inode.data)

    def allocate(self, size: int) -> None:
        self._fs.take_space(size - len(self._inode.data))
        self._inode.change(("size", size, b""))

    def close(self) -> None:
        pass


class _SimLock:
    def __init__(self, fs: SimFs, key: str) -> None:
        self._fs = fs
        self._key: str | None = key

    def release(self) -> None:
        if self._key is not None:
            self._fs.locks.discard(self._key)
            self._key = None


class SimFs:
    """One node's disk. quota: bytes of file data it holds at most (ENOSPC beyond).
    writeback: what a crash keeps of a file's unsynced changes, "prefix" or "subset"."""

    def __init__(self, quota: int = 1 << 40, writeback: str = "prefix") -> None:
        if writeback not in ("prefix", "subset"):
            raise ValueError(f"writeback must be prefix or subset, not {writeback!r}")
        self.root = _Dir()
        self.quota = quota
        self.writeback = writeback
        self.locks: set[str] = set()
        self.syncs = 0
        self.fail_syncs = 0  # the next this many syncs fail with EIO (see the module doc)
        self.failed_syncs = 0  # how many did

    # --- the FileSystem interface ---------------------------------------------------------

    def open(self, path: Path, *, create: bool = False, truncate: bool = False) -> SimFile:
        parent, name = self._parent(path)
        node = parent.entries.get(name)
        if node is None:
            if not create:
                raise _enoent(path)
            node = _Inode()
            parent.entries[name] = node
            parent.change(("link", name, ""), node)
        if not isinstance(node, _Inode):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", str(path))
        if truncate and node.data:
            node.change(("truncate", 0, b""))
        return SimFile(self, node)

    def read_bytes(self, path: Path) -> bytes:
        return bytes(self._file(path).data)

    def listdir(self, path: Path) -> list[str]:
        return sorted(self._dir(path).entries)

    def exists(self, path: Path) -> bool:
        return self._lookup(path) is not None

    def is_dir(self, path: Path) -> bool:
        return isinstance(self._lookup(path), _Dir)

    def file_size(self, path: Path) -> int:
        return len(self._file(path).data)

    def free_bytes(self, path: Path) -> int:
        return max(0, self.quota - self.used())

    def mkdir(self, path: Path) -> None:
        parent, name = self._parent(path)
        if name in parent.entries:
            raise FileExistsError(errno.EEXIST, "File exists", str(path))
        node = _Dir()
        parent.entries[name] = node
        parent.change(("link", name, ""), node)

    def rename(self, src: Path, dst: Path) -> None:
        parent, a = self._parent(src)
        other, b = self._parent(dst)
        if other is not parent:
            raise OSError(errno.EXDEV, "Cross-directory rename", str(src))
        if a not in parent.entries:
            raise _enoent(src)
        parent.entries[b] = parent.entries.pop(a)
        parent.change(("rename", a, b))

    def unlink(self, path: Path) -> None:
        parent, name = self._parent(path)
        if not isinstance(parent.entries.get(name), _Inode):
            raise _enoent(path)
        del parent.entries[name]
        parent.change(("unlink", name, ""))

    def fsync_dir(self, path: Path) -> None:
        self.before_sync()
        self._dir(path).sync()

    def lock(self, path: Path) -> _SimLock | None:
        self.open(path, create=True).close()
        key = str(path)
        if key in self.locks:
            return None
        self.locks.add(key)
        return _SimLock(self, key)

    # --- faults ---------------------------------------------------------------------------

    def crash(self, rng: random.Random) -> None:
        """Power loss: every file and directory keeps what was synced and a random prefix
        (or subset, see writeback) of what was not, the first dropped write maybe torn.
        Locks are gone."""
        subset = self.writeback == "subset"
        for node in self._all():
            if isinstance(node, _Inode):
                node.crash(rng, subset)
            else:
                node.crash(rng)
        self.locks.clear()

    def release_locks(self) -> None:
        """The process died (the page cache and everything in it stay)."""
        self.locks.clear()

    def corrupt(self, path: Path, offset: int, rng: random.Random) -> None:
        """Damage synced data: flip the bits of one durable byte (what reads see too, since
        the page cache would be refilled from the disk after the crash that precedes this)."""
        node = self._file(path)
        if node.ops:
            raise AssertionError(f"{path}: corrupt only a file with nothing unsynced")
        flip = rng.randrange(1, 256)
        node.durable[offset] ^= flip
        node.data[offset] ^= flip

    def before_sync(self) -> None:
        self.syncs += 1
        if self.fail_syncs:
            self.fail_syncs -= 1
            self.failed_syncs += 1
            raise OSError(errno.EIO, "Input/output error (simulated)")

    def take_space(self, grow: int) -> None:
        if grow > 0 and self.used() + grow > self.quota:
            raise OSError(errno.ENOSPC, "No space left on device (simulated)")

    def used(self) -> int:
        return sum(len(n.data) for n in self._all() if isinstance(n, _Inode))

    # --- internals ------------------------------------------------------------------------

    def _all(self) -> list[_Inode | _Dir]:
        """Every file and directory, reachable now or durably (a crash may bring back
        either), each once, parents before children."""
        seen: dict[int, _Inode | _Dir] = {}
        stack: list[_Inode | _Dir] = [self.root]
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen[id(node)] = node
            if isinstance(node, _Dir):
                stack.extend(node.entries.values())
                stack.extend(node.durable.values())
                stack.extend(n for _, n in node.ops if n is not None)
        return list(seen.values())

    def _lookup(self, path: Path) -> _Inode | _Dir | None:
        node: _Inode | _Dir = self.root
        for part in Path(path).parts[1:] if Path(path).is_absolute() else Path(path).parts:
            if not isinstance(node, _Dir):
                return None
            child = node.entries.get(part)
            if child is None:
                return None
            node = child
        return node

    def _dir(self, path: Path) -> _Dir:
        node = self._lookup(path)
        if not isinstance(node, _Dir):
            raise _enoent(path)
        return node

    def _file(self, path: Path) -> _Inode:
        node = self._lookup(path)
        if not isinstance(node, _Inode):
            raise _enoent(path)
        return node

    def _parent(self, path: Path) -> tuple[_Dir, str]:
        path = Path(path)
        return self._dir(path.parent), path.name
