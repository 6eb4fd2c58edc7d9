"""Shared helpers for the storage tests."""

from __future__ import annotations

from pathlib import Path

from raftkv.core.types import Entry
from raftkv.storage.fs import OS
from raftkv.storage.record import Record
from raftkv.storage.segment import list_segments, scan_segment


def payload(index: int, term: int = 1, size: int = 0) -> bytes:
    """Deterministic entry data, different for every (index, term)."""
    base = b"%d@%d;" % (index, term)
    return base * max(1, size // len(base))


def make(lo: int, hi: int, term: int = 1, size: int = 0) -> list[Entry]:
    """Entries lo..hi inclusive."""
    return [Entry(term, i, data=payload(i, term, size)) for i in range(lo, hi + 1)]


def segments(directory: Path) -> list[Path]:
    return [path for _, path in list_segments(OS, directory)]


def records(path: Path) -> list[Record]:
    """The valid records of a segment (header first)."""
    return scan_segment(path, path.read_bytes()).records


def flip(path: Path, offset: int) -> None:
    buf = bytearray(path.read_bytes())
    buf[offset] ^= 0xFF
    path.write_bytes(bytes(buf))
