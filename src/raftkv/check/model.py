"""The sequential specification a history is checked against.

A model is a pure state machine: step(state, input, output) says whether the operation may
take effect in that state with that output, and what the state becomes. States must be
hashable and compare by value: the checker caches (linearized set, state) pairs.

P-compositionality: when operations on different keys never interact, a history is
linearizable iff each per-key sub-history is. A model opts in via partition_key (or by
overriding partition); the checker then searches each partition on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Protocol, TypeVar

from raftkv.check.history import Operation

S = TypeVar("S")


class Model(Protocol[S]):
    """A sequential specification over states of type S.

    Subclass it explicitly to inherit the defaults (one partition, repr descriptions).
    """

    def init(self) -> S:
        """The state before any operation."""
        ...

    def step(self, state: S, input: object, output: object) -> tuple[bool, S]:
        """(legal, next state). Must be pure: same arguments, same answer, no mutation.

        With output UNKNOWN_OUTPUT it must be legal in every state: an operation that never
        returned may take effect anywhere, so the checker leaves the ones nothing observes to
        the end (and raises ValueError if the model refuses one there)."""
        ...

    def partition_key(self, input: object) -> Hashable | None:
        """The independent sub-history an input belongs to; None means it spans everything."""
        return None

    def partition(self, ops: Sequence[Operation]) -> list[list[Operation]]:
        """Split a history into independently checkable parts (default: by partition_key)."""
        return partition_by_key(ops, self.partition_key)

    def describe_operation(self, input: object, output: object) -> str:
        """One human-readable line for an operation."""
        return f"{input!r} -> {output!r}"

    def describe_state(self, state: S) -> str:
        """A human-readable state."""
        return repr(state)


def partition_by_key(
    ops: Sequence[Operation], key: Callable[[object], Hashable | None]
) -> list[list[Operation]]:
    """Group operations by key(input), in order of first appearance.

    If any operation has key None it may touch every part, so the history stays whole.
    Empty histories have no partitions.
    """
    groups: dict[Hashable, list[Operation]] = {}
    for op in ops:
        k = key(op.input)
        if k is None:
            return [list(ops)]
        groups.setdefault(k, []).append(op)
    return list(groups.values())
