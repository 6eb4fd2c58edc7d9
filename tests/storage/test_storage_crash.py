"""kill -9 a writer process at random moments: every acknowledged entry must survive."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from raftkv.storage import LogStorage

from .crash_writer import data_for

WRITER = Path(__file__).with_name("crash_writer.py")
ROUNDS = 5


def test_kill_9_never_loses_an_acknowledged_entry(tmp_path: Path) -> None:
    rng = random.Random(20240607)
    total_acked = 0
    for term in range(1, ROUNDS + 1):
        proc = subprocess.Popen(
            [sys.executable, str(WRITER), str(tmp_path), str(term)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()  # the writer is up and has acknowledged something
        time.sleep(rng.uniform(0.02, 0.4))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        out, err = first + proc.stdout.read(), proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL, err.decode()
        lines = out.split(b"\n")[:-1]  # a line cut by the kill has no newline: not acknowledged
        acked = [int(line) for line in lines]
        assert acked, err.decode()
        total_acked += len(acked)

        storage, recovered = LogStorage.open(tmp_path, segment_bytes=32 * 1024)
        storage.close()
        snap_index = 0
        if recovered.snapshot is not None:
            snap_index = recovered.snapshot.index
            assert recovered.snapshot.data == b"upto:%d" % snap_index
        indexes = [e.index for e in recovered.entries]
        assert indexes == list(range(snap_index + 1, snap_index + 1 + len(indexes)))
        assert storage.last_index() >= max(acked), (term, storage.last_index(), max(acked))
        by_index = {e.index: e for e in recovered.entries}
        for index in acked:
            if index > snap_index:
                assert by_index[index].data == data_for(index), index
        for entry in recovered.entries:
            assert entry.data == data_for(entry.index)
            assert entry.term <= term
        assert recovered.hard_state.term <= term
    assert total_acked >= ROUNDS
