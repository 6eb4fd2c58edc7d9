"""Counters for metrics. Plain integers, only ever increased; read them at any time."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class StorageStats:
    saves: int = 0  # save() calls that wrote something
    appends: int = 0  # entries written (an overwritten suffix counts again)
    hard_states: int = 0  # hard states written
    fsyncs: int = 0  # fsync/fdatasync calls on files and directories
    bytes_written: int = 0  # bytes of records written to WAL segments and snapshot files
    zero_fill_bytes: int = 0  # zeros written over preallocated segment space ahead of the tail
    segments_created: int = 0
    segments_removed: int = 0
    snapshots_saved: int = 0
    snapshots_removed: int = 0
    snapshot_failures: int = 0  # snapshot files that could not be written (nothing changed)
    allocation_failures: int = 0  # WAL segment space that could not be reserved (disk full)
    room_refusals: int = 0  # check_room() answers "no room" (writes refused, appends dropped)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
