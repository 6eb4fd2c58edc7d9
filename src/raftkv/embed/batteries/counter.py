"""A replicated integer counter."""

from __future__ import annotations

from raftkv.embed.replicated import Replicated, query, replicated


class Counter(Replicated):
    value: int

    def __init__(self, value: int = 0) -> None:
        self.value = value

    @replicated
    def add(self, delta: int = 1) -> int:
        """Add delta (may be negative); the new value."""
        self.value += delta
        return self.value

    @replicated
    def set(self, value: int) -> int:
        """Set the value; the previous one."""
        previous, self.value = self.value, value
        return previous

    @replicated
    def compare_and_set(self, expected: int, new: int) -> bool:
        """Set new only if the value is expected; whether it was."""
        if self.value != expected:
            return False
        self.value = new
        return True

    @query
    def get(self) -> int:
        return self.value
