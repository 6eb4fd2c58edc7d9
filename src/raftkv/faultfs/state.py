"""The file system that forgets: what the mount shows versus what a power cut keeps.

The backing directory holds the DURABLE state; this process's memory holds everything not yet
made durable. The model is the strictest POSIX reading, not ext4's data=ordered:

- a file's data and size reach the backing file only on fsync/fdatasync OF THAT FILE (both the
  same here: size changes are part of the data needed to read it back);
- a name (create, mkdir, unlink, rmdir, rename) reaches the backing directory only on an
  fsync OF ITS DIRECTORY; a file whose data was synced but whose name never was is lost;
- nothing is ever written back on its own: a power cut keeps exactly what was synced.

Each inode keeps an ordered overlay of unsynced data ops (write, truncate, allocate) over its
backing file; each directory keeps its visible entries in memory and its backing directory is
brought equal to them by fsyncdir. An inode with durable content but no durable name (synced
before its directory was) lives in BACKING/.faultfs/ as an orphan, deleted at a power cut as a
real file system reclaims an orphan inode.

Faults (armed through the control socket, see control.py):
- power_cut(): drop every unsynced op and every orphan, reload the tree from the backing dir;
- power_cut(torn=True): the same, except that the most recent unsynced write to a durably named
  file is persisted in part (a prefix of it, and the unsynced ops before it on that file);
  writes of nothing but zeros are passed over (tearing zeros over preallocated space, as the
  WAL's zero fill does, would change nothing);
- fail_fsync(n): the next n fsyncs (file or directory) fail with EIO. Like Linux since 4.13, the
  data that fsync was to flush is NOT kept for a retry: reads still see it, no later fsync
  writes it, so a caller that retries the fsync is told "success" for data a power cut loses
  (a directory whose fsync failed keeps its pending names: a later fsync may still write them);
- stall_fsync(): fsyncs block (a hung disk) until released or a power cut, which fails them
  with EIO: the chaos harness stalls a node's disk so that its newest write is unsynced when
  the power goes (a torn write needs one);
- quota: a write, truncate or fallocate that would make the files' total size exceed the quota
  fails with ENOSPC (apparent sizes: like ext4, writing inside preallocated space needs none).

Not modelled: hard links and symlinks (EPERM), renames across directories (EXDEV, as between
two file systems; callers copy), permissions (every caller is root), timestamps beyond mtime.
Thread-safety: every public method takes the one lock (the FUSE loop and the control thread).
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

HIDDEN = ".faultfs"  # the orphan area inside the backing dir, never shown in the mount


class OpState(Enum):
    PENDING = "pending"  # not yet durable
    DONE = "done"  # written to the backing file (kept only to order reads past a DOOMED op)
    DOOMED = "doomed"  # its fsync failed: visible until a power cut, never written back


@dataclass(slots=True)
class Write:
    offset: int
    data: bytes
    seq: int  # global order of writes (the torn-write fault picks the newest)
    state: OpState = OpState.PENDING


@dataclass(slots=True)
class Resize:  # truncate or extend to size
    size: int
    state: OpState = OpState.PENDING


@dataclass(slots=True)
class Allocate:  # fallocate mode 0: reserve [offset, offset + length), extending the size
    offset: int
    length: int
    state: OpState = OpState.PENDING


DataOp = Write | Resize | Allocate


@dataclass(eq=False, slots=True)
class FileInode:
    ino: int
    mode: int
    backing: str | None  # durable copy, relative to the backing root; None: nothing durable
    size: int  # what the mount shows
    ops: list[DataOp] = field(default_factory=list)
    mtime_ns: int = 0
    handles: int = 0


@dataclass(eq=False, slots=True)
class DirInode:
    ino: int
    mode: int
    backing: str | None
    entries: dict[str, FileInode | DirInode] = field(default_factory=dict)
    dirty: bool = False  # entries differ from the backing directory's
    mtime_ns: int = 0
    handles: int = 0


Inode = FileInode | DirInode


def _err(code: int, what: str = "") -> OSError:
    return OSError(code, os.strerror(code) + (f": {what}" if what else ""))


@dataclass(frozen=True, slots=True)
class Counters:
    writes: int
    fsyncs: int
    fsync_failures: int
    enospc: int
    power_cuts: int
    torn: int
    pending_ops: int
    used_bytes: int


class FaultState:
    """The mounted tree. Paths are absolute mount paths ('/', '/raft/wal-1.log')."""

    def __init__(self, backing: Path, seed: int = 0) -> None:
        self.backing = backing.resolve()
        self.rng = random.Random(seed)
        self.lock = threading.RLock()
        self.quota: int | None = None
        self.fsync_failures_armed = 0
        self._released = threading.Event()  # cleared while fsyncs stall
        self._released.set()
        self._generation = 0  # bumped by each power cut: a stalled fsync from before fails
        self._seq = 0
        self._ino = 1
        self._handles: dict[int, Inode] = {}
        self._next_fh = 1
        self._stats = {"writes": 0, "fsyncs": 0, "fsync_failures": 0, "enospc": 0}
        self._stats.update(power_cuts=0, torn=0)
        (self.backing / HIDDEN).mkdir(parents=True, exist_ok=True)
        self.root = self._load()

    # --- loading the durable state ------------------------------------------------------

    def _new_ino(self) -> int:
        self._ino += 1
        return self._ino

    def _load(self) -> DirInode:
        hidden = self.backing / HIDDEN
        shutil.rmtree(hidden, ignore_errors=True)  # orphans die with the power
        hidden.mkdir()
        return self._load_dir("", self._new_ino())

    def _load_dir(self, rel: str, ino: int) -> DirInode:
        path = self.backing / rel
        st = path.stat()
        d = DirInode(ino, stat.S_IMODE(st.st_mode), rel, mtime_ns=st.st_mtime_ns)
        for entry in os.scandir(path):
            if rel == "" and entry.name == HIDDEN:
                continue
            child_rel = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_dir(follow_symlinks=False):
                d.entries[entry.name] = self._load_dir(child_rel, self._new_ino())
            elif entry.is_file(follow_symlinks=False):
                est = entry.stat(follow_symlinks=False)
                d.entries[entry.name] = FileInode(
                    self._new_ino(),
                    stat.S_IMODE(est.st_mode),
                    child_rel,
                    est.st_size,
                    mtime_ns=est.st_mtime_ns,
                )
        return d

    # --- lookups --------------------------------------------------------------------------

    def _split(self, path: str) -> tuple[DirInode, str]:
        parent, _, name = path.rstrip("/").rpartition("/")
        d = self.lookup(parent or "/")
        if not isinstance(d, DirInode):
            raise _err(errno.ENOTDIR, parent)
        if parent in ("", "/") and name == HIDDEN:
            raise _err(errno.EPERM, "reserved name")
        return d, name

    def lookup(self, path: str) -> Inode:
        node: Inode = self.root
        for part in (p for p in path.split("/") if p):
            if not isinstance(node, DirInode):
                raise _err(errno.ENOTDIR, path)
            child = node.entries.get(part)
            if child is None:
                raise _err(errno.ENOENT, path)
            node = child
        return node

    def handle(self, fh: int) -> Inode:
        node = self._handles.get(fh)
        if node is None:
            raise _err(errno.EIO, "stale handle (the file system lost power)")
        return node

    def node(self, path: str | None, fh: int | None) -> Inode:
        with self.lock:
            return self.handle(fh) if fh else self.lookup(path or "/")

    # --- handles --------------------------------------------------------------------------

    def open(self, path: str) -> int:
        with self.lock:
            return self._open(self.lookup(path))

    def _open(self, node: Inode) -> int:
        fh = self._next_fh
        self._next_fh += 1
        self._handles[fh] = node
        node.handles += 1
        return fh

    def release(self, fh: int) -> None:
        with self.lock:
            node = self._handles.pop(fh, None)
            if node is not None:
                node.handles -= 1
                if node.handles == 0 and not self._linked(node):
                    self._drop_orphan(node)

    def _linked(self, node: Inode) -> bool:
        return any(n is node for n in self._walk(self.root))

    def _walk(self, d: DirInode) -> Iterator[Inode]:
        yield d
        for child in d.entries.values():
            if isinstance(child, DirInode):
                yield from self._walk(child)
            else:
                yield child

    def _drop_orphan(self, node: Inode) -> None:
        if node.backing is not None and node.backing.startswith(HIDDEN + "/"):
            self._remove_backing(node.backing)
            node.backing = None

    # --- namespace ops (pending until the directory's fsync) --------------------------------

    def create(self, path: str, mode: int) -> int:
        with self.lock:
            d, name = self._split(path)
            existing = d.entries.get(name)
            if isinstance(existing, DirInode):
                raise _err(errno.EISDIR, path)
            if existing is None:
                existing = FileInode(self._new_ino(), stat.S_IMODE(mode), None, 0, mtime_ns=_now())
                self._link(d, name, existing)
            return self._open(existing)

    def mkdir(self, path: str, mode: int) -> None:
        with self.lock:
            d, name = self._split(path)
            if name in d.entries:
                raise _err(errno.EEXIST, path)
            self._link(
                d, name, DirInode(self._new_ino(), stat.S_IMODE(mode), None, mtime_ns=_now())
            )

    def unlink(self, path: str) -> None:
        with self.lock:
            d, name = self._split(path)
            node = d.entries.get(name)
            if node is None:
                raise _err(errno.ENOENT, path)
            if isinstance(node, DirInode):
                raise _err(errno.EISDIR, path)
            self._unlink(d, name)

    def rmdir(self, path: str) -> None:
        with self.lock:
            d, name = self._split(path)
            node = d.entries.get(name)
            if node is None:
                raise _err(errno.ENOENT, path)
            if not isinstance(node, DirInode):
                raise _err(errno.ENOTDIR, path)
            if node.entries:
                raise _err(errno.ENOTEMPTY, path)
            self._unlink(d, name)

    def rename(self, old: str, new: str) -> None:
        with self.lock:
            od, oname = self._split(old)
            nd, nname = self._split(new)
            if od is not nd:
                raise _err(errno.EXDEV, "renames across directories are not modelled")
            node = od.entries.get(oname)
            if node is None:
                raise _err(errno.ENOENT, old)
            if oname == nname:
                return
            target = nd.entries.get(nname)
            if target is not None:
                if isinstance(target, DirInode) != isinstance(node, DirInode):
                    raise _err(errno.EISDIR if isinstance(target, DirInode) else errno.ENOTDIR, new)
                if isinstance(target, DirInode) and target.entries:
                    raise _err(errno.ENOTEMPTY, new)
                self._unlink(nd, nname)
            del od.entries[oname]
            self._link(nd, nname, node)

    def _link(self, d: DirInode, name: str, node: Inode) -> None:
        d.entries[name] = node
        d.dirty = True
        d.mtime_ns = _now()

    def _unlink(self, d: DirInode, name: str) -> None:
        node = d.entries.pop(name)
        d.dirty = True
        d.mtime_ns = _now()
        if node.handles == 0 and not self._linked(node):
            self._drop_orphan(node)

    # --- data ops (pending until the file's fsync) ------------------------------------------

    def _file(self, path: str | None, fh: int | None) -> FileInode:
        node = self.handle(fh) if fh else self.lookup(path or "/")
        if not isinstance(node, FileInode):
            raise _err(errno.EISDIR, path or "")
        return node

    def write(self, path: str | None, fh: int | None, offset: int, data: bytes) -> int:
        with self.lock:
            f = self._file(path, fh)
            self._reserve(f, offset + len(data))
            self._seq += 1
            f.ops.append(Write(offset, bytes(data), self._seq))
            f.size = max(f.size, offset + len(data))
            f.mtime_ns = _now()
            self._stats["writes"] += 1
            return len(data)

    def truncate(self, path: str | None, fh: int | None, size: int) -> None:
        with self.lock:
            f = self._file(path, fh)
            self._reserve(f, size)
            f.ops.append(Resize(size))
            f.size = size
            f.mtime_ns = _now()

    def fallocate(self, path: str | None, fh: int | None, mode: int, offset: int, n: int) -> None:
        with self.lock:
            if mode != 0:
                raise _err(errno.EOPNOTSUPP, f"fallocate mode {mode:#x}")
            f = self._file(path, fh)
            self._reserve(f, offset + n)
            f.ops.append(Allocate(offset, n))
            f.size = max(f.size, offset + n)

    def _reserve(self, f: FileInode, new_size: int) -> None:
        if self.quota is None or new_size <= f.size:
            return
        if self.used_bytes() + new_size - f.size > self.quota:
            self._stats["enospc"] += 1
            raise _err(errno.ENOSPC, f"quota of {self.quota} bytes")

    def used_bytes(self) -> int:
        with self.lock:
            files = {id(n): n for n in self._walk(self.root) if isinstance(n, FileInode)}
            files.update({id(n): n for n in self._handles.values() if isinstance(n, FileInode)})
            return sum(f.size for f in files.values())

    def read(self, path: str | None, fh: int | None, offset: int, size: int) -> bytes:
        with self.lock:
            f = self._file(path, fh)
            end = min(offset + size, f.size)
            if end <= offset:
                return b""
            buf = bytearray(end - offset)
            if f.backing is not None:
                with open(self.backing / f.backing, "rb") as src:
                    durable = os.pread(src.fileno(), end - offset, offset)
                buf[: len(durable)] = durable
            for op in f.ops:
                _overlay(buf, offset, op)
            return bytes(buf)

    # --- fsync ----------------------------------------------------------------------------

    def stall_fsync(self, stall: bool) -> None:
        if stall:
            self._released.clear()
        else:
            self._released.set()

    def fsync(self, path: str | None, fh: int | None) -> None:
        generation = self._generation
        self._released.wait()  # outside the lock: the control thread must get in
        with self.lock:
            if generation != self._generation:
                raise _err(errno.EIO, "the file system lost power during this fsync")
            node = self.handle(fh) if fh else self.lookup(path or "/")
            self._stats["fsyncs"] += 1
            if self.fsync_failures_armed > 0:
                self.fsync_failures_armed -= 1
                self._stats["fsync_failures"] += 1
                if isinstance(node, FileInode):
                    for op in node.ops:  # like Linux: the failed data is never retried
                        if op.state is OpState.PENDING:
                            op.state = OpState.DOOMED
                raise _err(errno.EIO, "injected fsync failure")
            if isinstance(node, FileInode):
                self._flush_file(node)
            else:
                self._flush_dir(node)

    def _ensure_backing(self, node: Inode) -> str:
        if node.backing is None:
            node.backing = f"{HIDDEN}/ino-{node.ino}"
            target = self.backing / node.backing
            if isinstance(node, DirInode):
                target.mkdir()
            else:
                target.touch()
        return node.backing

    def _flush_file(self, f: FileInode, upto: int | None = None, prefix: int | None = None) -> None:
        """Write f's pending ops to its backing file (all, or those before index `upto` plus
        `prefix` bytes of the write at `upto`: the torn write)."""
        rel = self._ensure_backing(f)
        fd = os.open(self.backing / rel, os.O_RDWR)
        try:
            for k, op in enumerate(f.ops):
                if upto is not None and k > upto:
                    break
                if op.state is not OpState.PENDING:
                    continue
                match op:
                    case Write(offset, data):
                        _pwrite_all(fd, data if k != upto else data[:prefix], offset)
                    case Resize(size):
                        os.ftruncate(fd, size)
                    case Allocate(offset, length):
                        os.posix_fallocate(fd, offset, length)
                op.state = OpState.DONE
        finally:
            os.close(fd)
        if all(op.state is OpState.DONE for op in f.ops):
            f.ops.clear()

    def _flush_dir(self, d: DirInode) -> None:
        """Make d's backing directory hold exactly d's visible entries (not their contents)."""
        rel = self._ensure_backing(d)
        if not d.dirty:
            return
        here = self.backing / rel
        owners = {n.backing: n for n in self._live_nodes() if n.backing is not None}
        # Names that go away, or now name another inode: move a still-live inode to the
        # orphan area (it is open, or linked again below), delete the rest.
        for name in sorted(os.listdir(here)):
            if rel == "" and name == HIDDEN:
                continue
            child_rel = f"{rel}/{name}" if rel else name
            owner = owners.get(child_rel)
            if owner is not None and d.entries.get(name) is owner:
                continue
            if owner is not None:
                self._move_backing(owner, f"{HIDDEN}/ino-{owner.ino}")
            else:
                self._remove_backing(child_rel)
        for name, node in d.entries.items():
            child_rel = f"{rel}/{name}" if rel else name
            if node.backing == child_rel:
                continue
            if node.backing is not None:
                self._move_backing(node, child_rel)
                continue
            if isinstance(node, DirInode):
                os.mkdir(self.backing / child_rel)
            else:
                (self.backing / child_rel).touch()  # named, but its data was never synced
            node.backing = child_rel
        d.dirty = False

    def _move_backing(self, node: Inode, new_rel: str) -> None:
        """Rename node's durable copy; a directory's durable descendants move with it."""
        old_rel = node.backing
        assert old_rel is not None
        os.rename(self.backing / old_rel, self.backing / new_rel)
        node.backing = new_rel
        if isinstance(node, DirInode):
            for n in self._live_nodes():
                if n.backing is not None and n.backing.startswith(old_rel + "/"):
                    n.backing = new_rel + n.backing[len(old_rel) :]

    def _live_nodes(self) -> list[Inode]:
        seen = {id(n): n for n in self._walk(self.root)}
        seen.update({id(n): n for n in self._handles.values()})
        return list(seen.values())

    def _remove_backing(self, rel: str) -> None:
        path = self.backing / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    # --- faults -----------------------------------------------------------------------------

    def power_cut(self, torn: bool = False) -> dict[str, object]:
        """Lose every unsynced op (with torn: persist a prefix of the newest write to a
        durably named file first). Open handles go stale (EIO)."""
        with self.lock:
            report: dict[str, object] = {"dropped_ops": self._pending_ops()}
            if torn:
                report["torn"] = self._tear()
            self._handles.clear()
            self.root = self._load()
            self.fsync_failures_armed = 0
            self._generation += 1
            self._released.set()
            self._stats["power_cuts"] += 1
            return report

    def _tear(self) -> dict[str, object] | None:
        best: tuple[int, FileInode, int] | None = None
        for node in self._walk(self.root):
            if not isinstance(node, FileInode) or node.backing is None:
                continue
            if node.backing.startswith(HIDDEN + "/"):
                continue
            for k, op in enumerate(node.ops):
                if not isinstance(op, Write) or op.state is not OpState.PENDING:
                    continue
                if (best is None or op.seq > best[0]) and len(op.data) > 1 and any(op.data):
                    best = (op.seq, node, k)
        if best is None:
            return None
        _, f, k = best
        op = f.ops[k]
        assert isinstance(op, Write)
        keep = self.rng.randrange(1, len(op.data))
        self._flush_file(f, upto=k, prefix=keep)
        self._stats["torn"] += 1
        return {"file": f.backing, "offset": op.offset, "length": len(op.data), "kept": keep}

    def pending(self) -> list[str]:
        """What a power cut now would lose: 'path: N data ops' / 'path/: names'."""
        with self.lock:
            out: list[str] = []

            def visit(d: DirInode, prefix: str) -> None:
                if d.dirty:
                    out.append(f"{prefix}/: names")
                for name, child in d.entries.items():
                    if isinstance(child, DirInode):
                        visit(child, f"{prefix}/{name}")
                    elif any(op.state is not OpState.DONE for op in child.ops):
                        n = sum(op.state is not OpState.DONE for op in child.ops)
                        out.append(f"{prefix}/{name}: {n} data ops")

            visit(self.root, "")
            return out

    def _pending_ops(self) -> int:
        files = sum(
            sum(op.state is not OpState.DONE for op in n.ops)
            for n in self._live_nodes()
            if isinstance(n, FileInode)
        )
        dirs = sum(1 for n in self._live_nodes() if isinstance(n, DirInode) and n.dirty)
        return files + dirs

    def counters(self) -> Counters:
        with self.lock:
            s = self._stats
            return Counters(
                s["writes"],
                s["fsyncs"],
                s["fsync_failures"],
                s["enospc"],
                s["power_cuts"],
                s["torn"],
                self._pending_ops(),
                self.used_bytes(),
            )

    # --- attributes -------------------------------------------------------------------------

    def attrs(self, node: Inode) -> dict[str, int]:
        if isinstance(node, DirInode):
            subdirs = sum(isinstance(c, DirInode) for c in node.entries.values())
            return {
                "st_mode": stat.S_IFDIR | node.mode,
                "st_nlink": 2 + subdirs,
                "st_size": 4096,
                "st_ino": node.ino,
                "st_mtime": node.mtime_ns,
                "st_ctime": node.mtime_ns,
                "st_atime": node.mtime_ns,
            }
        return {
            "st_mode": stat.S_IFREG | node.mode,
            "st_nlink": 1,
            "st_size": node.size,
            "st_blocks": (node.size + 511) // 512,
            "st_blksize": 4096,
            "st_ino": node.ino,
            "st_mtime": node.mtime_ns,
            "st_ctime": node.mtime_ns,
            "st_atime": node.mtime_ns,
        }

    def chmod(self, path: str | None, fh: int | None, mode: int) -> None:
        with self.lock:
            self.node(path, fh).mode = stat.S_IMODE(mode)

    def statfs(self) -> dict[str, int]:
        with self.lock:
            st = os.statvfs(self.backing)
            bsize = st.f_frsize or 4096
            total, avail = st.f_blocks * bsize, st.f_bavail * bsize
            if self.quota is not None:
                total = self.quota
                avail = max(0, self.quota - self.used_bytes())
            return {
                "f_bsize": bsize,
                "f_frsize": bsize,
                "f_blocks": total // bsize,
                "f_bfree": avail // bsize,
                "f_bavail": avail // bsize,
                "f_files": st.f_files,
                "f_ffree": st.f_ffree,
                "f_favail": st.f_favail,
                "f_namemax": 255,
            }


def _overlay(buf: bytearray, offset: int, op: DataOp) -> None:
    """Apply one data op to buf, which holds the file's bytes [offset, offset + len(buf))."""
    end = offset + len(buf)
    match op:
        case Write(woff, data):
            lo, hi = max(woff, offset), min(woff + len(data), end)
            if lo < hi:
                buf[lo - offset : hi - offset] = data[lo - woff : hi - woff]
        case Resize(size):
            if size < end:
                start = max(size, offset) - offset
                buf[start:] = bytes(len(buf) - start)
        case Allocate():
            pass  # new space reads as zeros: bytes past an earlier size were already zeroed


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _now() -> int:
    return time.time_ns()
