"""Random histories of saves, overwrites, snapshots, compactions and reopens against a model."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv.core.types import Entry, HardState, Snapshot
from raftkv.storage import LogStorage

from .helpers import payload


@dataclass
class Model:
    hard_state: HardState = field(default_factory=HardState)
    base: tuple[int, int] = (0, 0)
    log: list[Entry] = field(default_factory=list)  # entries after base
    snapshot: Snapshot | None = None

    def last(self) -> int:
        return self.log[-1].index if self.log else self.base[0]

    def term_at(self, index: int) -> int | None:
        if index == self.base[0]:
            return self.base[1]
        if self.base[0] < index <= self.last():
            return self.log[index - self.base[0] - 1].term
        return None


op = st.one_of(
    st.tuples(
        st.just("save"),
        st.integers(0, 6),  # how far back from last + 1 the batch starts
        st.integers(0, 5),  # entries
        st.integers(0, 1),  # term bump
        st.booleans(),  # with a hard state
        st.integers(0, 150),  # entry size
    ),
    st.tuples(st.just("snap"), st.integers(-3, 4), st.booleans()),
    st.just(("compact",)),
    st.just(("reopen",)),
)


# RAFTKV_STORAGE_EXAMPLES=5000 for a longer local run.
@settings(max_examples=int(os.environ.get("RAFTKV_STORAGE_EXAMPLES", "60")), deadline=None)
@given(st.lists(op, min_size=1, max_size=40))
def test_random_histories_match_the_model(ops: list[tuple[object, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        storage, _ = LogStorage.open(directory, segment_bytes=600, sync=False)
        model, term, serial = Model(), 1, 0
        try:
            for step in ops:
                kind = step[0]
                if kind == "save":
                    _, back, count, bump, with_hs, size = step
                    assert isinstance(back, int) and isinstance(count, int)
                    assert isinstance(bump, int) and isinstance(size, int)
                    term += bump
                    first = max(model.base[0] + 1, model.last() + 1 - back)
                    entries = [
                        Entry(term, i, data=payload(i, term, size))
                        for i in range(first, first + count)
                    ]
                    serial += 1
                    hs = HardState(term, f"n{serial}", model.base[0]) if with_hs else None
                    storage.save(hs, entries)
                    model.hard_state = hs or model.hard_state
                    if entries:
                        del model.log[first - model.base[0] - 1 :]
                        model.log.extend(entries)
                elif kind == "snap":
                    _, delta, same_term = step
                    assert isinstance(delta, int)
                    index = max(1, model.base[0], model.last() + delta)
                    here = model.term_at(index)
                    snap_term = here if same_term and here is not None else term + 1
                    if index == model.base[0] and snap_term != model.base[1]:
                        continue  # one index, one term: Raft never produces this
                    snap = Snapshot(index, snap_term, b"image %d" % index, ("n1",))
                    storage.install_snapshot(snap)
                    if model.term_at(index) == snap_term:
                        model.log = [e for e in model.log if e.index > index]
                    else:
                        model.log = []
                    model.base, model.snapshot = (index, snap_term), snap
                    term = max(term, snap_term)
                elif kind == "compact":
                    storage.compact(model.base[0])
                else:
                    storage.close()
                    storage, recovered = LogStorage.open(directory, segment_bytes=600, sync=False)
                    assert recovered.torn_tail is None
                    assert recovered.hard_state == model.hard_state
                    assert recovered.snapshot == model.snapshot
                    assert recovered.entries == model.log
                assert storage.first_index() == model.base[0] + 1
                assert storage.last_index() == model.last()
        finally:
            storage.close()
        storage, recovered = LogStorage.open(directory, segment_bytes=600, sync=False)
        storage.close()
        assert (recovered.hard_state, recovered.snapshot) == (model.hard_state, model.snapshot)
        assert recovered.entries == model.log
