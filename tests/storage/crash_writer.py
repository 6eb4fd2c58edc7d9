"""Child process for the kill -9 test: appends forever, printing each index only after save()
returned (acknowledged). Usage: crash_writer.py DIR TERM. Snapshots and compacts now and then."""

from __future__ import annotations

import random
import sys
from pathlib import Path

from raftkv.core.types import Entry, HardState, Snapshot
from raftkv.storage import LogStorage


def data_for(index: int) -> bytes:
    return b"entry-%d;" % index * (1 + index % 7)


def main() -> None:
    directory, term = Path(sys.argv[1]), int(sys.argv[2])
    rng = random.Random(term)
    storage, _ = LogStorage.open(directory, segment_bytes=32 * 1024)
    out = sys.stdout
    run_start = storage.last_index() + 1  # entries from here on have this run's term
    while True:
        first = storage.last_index() + 1
        batch = [Entry(term, i, data=data_for(i)) for i in range(first, first + rng.randint(1, 8))]
        hard_state = HardState(term, "n1", first - 1) if rng.random() < 0.3 else None
        storage.save(hard_state, batch)
        out.write(f"{batch[-1].index}\n")
        out.flush()
        index = storage.last_index() - 5
        if index >= run_start and rng.random() < 0.01:
            storage.install_snapshot(Snapshot(index, term, b"upto:%d" % index))
            storage.compact(index)


if __name__ == "__main__":
    main()
