"""Porcupine's etcdModel: one register with read, write and compare-and-set.

State: the register's int value, or None while it was never written (Porcupine: nil).
An UNKNOWN_OUTPUT step is always legal: a write still sets the value and a cas still swaps
when its compare matches, so an open operation may take effect at any point, or never.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from raftkv.check.history import UNKNOWN_OUTPUT
from raftkv.check.model import Model

RegisterState = int | None


class RegisterOp(enum.StrEnum):
    READ = "read"
    WRITE = "write"
    CAS = "cas"


@dataclass(frozen=True, slots=True)
class RegisterInput:
    """read(); write(value); cas(expected -> value). Outputs: read -> int | None, write -> None,
    cas -> bool (True = swapped), or UNKNOWN_OUTPUT for any of them."""

    op: RegisterOp
    value: int | None = None
    expected: int | None = None


class EtcdRegisterModel(Model[RegisterState]):
    """Single register, nil initial; not partitioned (one register per history)."""

    def init(self) -> RegisterState:
        return None

    def step(
        self, state: RegisterState, input: object, output: object
    ) -> tuple[bool, RegisterState]:
        assert isinstance(input, RegisterInput)
        op = input.op
        if op is RegisterOp.READ:
            return (output is UNKNOWN_OUTPUT or output == state), state
        if op is RegisterOp.WRITE:
            return True, input.value
        matches = state == input.expected
        if output is UNKNOWN_OUTPUT:
            return True, input.value if matches else state
        if output is True:
            return matches, input.value
        return not matches, state

    def describe_operation(self, input: object, output: object) -> str:
        assert isinstance(input, RegisterInput)
        out = "?" if output is UNKNOWN_OUTPUT else _show(output)
        if input.op is RegisterOp.READ:
            return f"read() -> {out}"
        if input.op is RegisterOp.WRITE:
            return f"write({_show(input.value)})" + (" -> ?" if out == "?" else "")
        return f"cas({_show(input.expected)} -> {_show(input.value)}) -> {out}"

    def describe_state(self, state: RegisterState) -> str:
        return _show(state)


def _show(value: object) -> str:
    if value is None:
        return "nil"
    if value is True:
        return "ok"
    if value is False:
        return "fail"
    return str(value)
