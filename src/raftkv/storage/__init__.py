"""Durable storage: segmented WAL with hard state, snapshot files, crash recovery.

See docs/storage.md for the on-disk layout and what to do about a CorruptionError.
"""

from raftkv.storage.stats import StorageStats
from raftkv.storage.wal import (
    DEFAULT_KEEP_SNAPSHOTS,
    DEFAULT_SEGMENT_BYTES,
    LogStorage,
    Recovered,
)

__all__ = [
    "DEFAULT_KEEP_SNAPSHOTS",
    "DEFAULT_SEGMENT_BYTES",
    "LogStorage",
    "Recovered",
    "StorageStats",
]
