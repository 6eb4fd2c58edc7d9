"""A replicated dict from str keys to msgpack values (None, bool, int, float, str, bytes,
lists and dicts of them). Reads return the stored objects: do not mutate them."""

from __future__ import annotations

from typing import Any

from raftkv.embed.replicated import Replicated, query, replicated


class ReplicatedDict(Replicated):
    data: dict[str, Any]

    def __init__(self) -> None:
        self.data = {}

    @replicated
    def set(self, key: str, value: Any) -> Any:
        """Store value under key; the previous value (None if absent)."""
        previous = self.data.get(key)
        self.data[key] = value
        return previous

    @replicated
    def set_default(self, key: str, value: Any) -> Any:
        """Store value only if key is absent; the value now stored under key."""
        return self.data.setdefault(key, value)

    @replicated
    def compare_and_set(self, key: str, expected: Any, new: Any) -> bool:
        """Store new only if key currently holds expected (None: absent)."""
        if self.data.get(key) != expected:
            return False
        self.data[key] = new
        return True

    @replicated
    def delete(self, key: str) -> bool:
        """Remove key; whether it was there."""
        return self.data.pop(key, _MISSING) is not _MISSING

    @replicated
    def update(self, items: dict[str, Any]) -> int:
        """Store every item (applied atomically: one log entry); the new size."""
        self.data.update(items)
        return len(self.data)

    @replicated
    def clear(self) -> int:
        """Remove everything; how many keys there were."""
        n = len(self.data)
        self.data.clear()
        return n

    @query
    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    @query
    def contains(self, key: str) -> bool:
        return key in self.data

    @query
    def keys(self) -> list[str]:
        return sorted(self.data)

    @query
    def items(self) -> list[tuple[str, Any]]:
        return sorted(self.data.items())

    @query
    def size(self) -> int:
        return len(self.data)


_MISSING = object()
