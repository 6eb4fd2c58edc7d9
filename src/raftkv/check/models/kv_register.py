"""raftkv's own key-value semantics: put / get / cas / delete, partitioned by key.

Per-key state: the value (str), or None while the key is absent (the initial state).
Outputs: put -> None; get -> str | None; cas -> bool (True = swapped); delete -> None.
An UNKNOWN_OUTPUT step is always legal and may take effect: put sets, cas swaps iff its
compare matches, delete removes, get changes nothing. Outputs of put and delete carry no
information and are not checked.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable
from dataclasses import dataclass

from raftkv.check.history import UNKNOWN_OUTPUT
from raftkv.check.model import Model

KvState = str | None


class KvOp(enum.StrEnum):
    PUT = "put"
    GET = "get"
    CAS = "cas"
    DELETE = "delete"


_OPS = frozenset(KvOp)


@dataclass(frozen=True, slots=True)
class KvInput:
    """One request. op is a KvOp or its string; cas swaps to value iff the current value equals
    expected (expected None = the key is absent)."""

    op: str
    key: str
    value: str | None = None
    expected: str | None = None

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"unknown op {self.op!r}; expected one of {sorted(_OPS)}")


class KvRegisterModel(Model[KvState]):
    def init(self) -> KvState:
        return None

    def step(self, state: KvState, input: object, output: object) -> tuple[bool, KvState]:
        assert isinstance(input, KvInput)
        op = input.op
        if op == "get":
            return (output is UNKNOWN_OUTPUT or output == state), state
        if op == "put":
            return True, input.value
        if op == "delete":
            return True, None
        matches = state == input.expected
        if output is UNKNOWN_OUTPUT:
            return True, input.value if matches else state
        if output is True:
            return matches, input.value
        if output is False:
            return not matches, state
        return False, state  # a cas answers a bool; anything else is not a legal reply

    def partition_key(self, input: object) -> Hashable:
        assert isinstance(input, KvInput)
        return input.key

    def describe_operation(self, input: object, output: object) -> str:
        assert isinstance(input, KvInput)
        unknown = output is UNKNOWN_OUTPUT
        key = repr(input.key)
        if input.op == "get":
            return f"get({key}) -> " + ("?" if unknown else _show(output))
        suffix = " -> ?" if unknown else ""
        if input.op == "put":
            return f"put({key}, {_show(input.value)})" + suffix
        if input.op == "delete":
            return f"delete({key})" + suffix
        swapped = "?" if unknown else ("swapped" if output is True else "not swapped")
        return f"cas({key}, {_show(input.expected)} -> {_show(input.value)}) -> {swapped}"

    def describe_state(self, state: KvState) -> str:
        return _show(state)


def _show(value: object) -> str:
    return "<absent>" if value is None else repr(value)
