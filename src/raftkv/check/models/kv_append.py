"""Porcupine's kvModel: get / put / append on string values, partitioned by key.

Per-key state: a string, initially "" (a missing key reads as the empty string).
put and append always succeed; a get is legal iff it read the current value. An
UNKNOWN_OUTPUT get is always legal; an unknown put or append still takes effect.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable
from dataclasses import dataclass

from raftkv.check.history import UNKNOWN_OUTPUT
from raftkv.check.model import Model


class AppendOp(enum.StrEnum):
    GET = "get"
    PUT = "put"
    APPEND = "append"


@dataclass(frozen=True, slots=True)
class KvAppendInput:
    """get(key) -> str; put(key, value) -> None; append(key, value) -> None."""

    op: AppendOp
    key: str
    value: str = ""


class KvAppendModel(Model[str]):
    def init(self) -> str:
        return ""

    def step(self, state: str, input: object, output: object) -> tuple[bool, str]:
        assert isinstance(input, KvAppendInput)
        op = input.op
        if op is AppendOp.GET:
            return (output is UNKNOWN_OUTPUT or output == state), state
        if op is AppendOp.PUT:
            return True, input.value
        return True, state + input.value

    def partition_key(self, input: object) -> Hashable:
        assert isinstance(input, KvAppendInput)
        return input.key

    def describe_operation(self, input: object, output: object) -> str:
        assert isinstance(input, KvAppendInput)
        if input.op is AppendOp.GET:
            out = "?" if output is UNKNOWN_OUTPUT else repr(output)
            return f"get({input.key!r}) -> {out}"
        return f"{input.op}({input.key!r}, {input.value!r})"

    def describe_state(self, state: str) -> str:
        return repr(state)
