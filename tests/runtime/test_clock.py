"""TickClock: every elapsed tick is delivered, including all of those missed in a stall."""

from __future__ import annotations

from raftkv.runtime.clock import TickClock


def test_ticks_follow_elapsed_time_and_a_stall_delivers_them_all() -> None:
    now = [100.0]
    clock = TickClock(0.05, now=lambda: now[0])
    assert clock.take() == 0
    now[0] += 0.051
    assert clock.take() == 1
    assert clock.take() == 0
    now[0] += 3.0  # a 3 s pause (SIGSTOP): the leader must see 60 ticks pass at once
    assert clock.take() == 60
    now[0] += 0.049
    assert clock.take() == 1  # fractions accumulate: no drift
