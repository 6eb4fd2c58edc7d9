"""Logical ticks from the monotonic clock.

The core counts time in ticks. A timer that adds one tick per wake-up undercounts after a stall
(GC pause, SIGSTOP, an overloaded machine): a paused leader would wake up believing its lease is
still valid. TickClock instead reports every whole tick period that has elapsed, and the Ready
loop delivers them before any message or request of the same cycle.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TickClock:
    def __init__(self, period: float, now: Callable[[], float] = time.monotonic) -> None:
        if period <= 0:
            raise ValueError("tick period must be positive")
        self._period = period
        self._now = now
        self._origin = now()
        self._delivered = 0

    def take(self) -> int:
        """Ticks elapsed since the last call (0 or more; many after a stall)."""
        due = int((self._now() - self._origin) / self._period)
        fresh = max(0, due - self._delivered)
        self._delivered += fresh
        return fresh
