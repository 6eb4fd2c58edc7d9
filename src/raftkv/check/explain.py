"""Human-readable account of why a partition is not linearizable.

It replays the deepest linearization the search reached, then names the operation that had to
come next (the earliest return among the rest) and the other operations that could have gone
before it. Every continuation from that prefix was a dead end.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Any

from raftkv.check.history import Operation
from raftkv.check.model import Model

_SHOW_PREFIX = 8  # how many of the last linearized operations to list
_SHOW_PENDING = 8


def _time(t: float) -> str:
    if t == math.inf:
        return "never"
    return str(int(t)) if t == int(t) else f"{t:g}"


def _op_line(model: Model[Any], ops: Sequence[Operation], i: int) -> str:
    op = ops[i]
    return (
        f"#{i} client {op.client} [{_time(op.call)}..{_time(op.ret)}] "
        f"{model.describe_operation(op.input, op.output)}"
    )


def explain_illegal(
    model: Model[Any],
    ops: Sequence[Operation],
    prefix: Sequence[int],
    partition: int,
    partitions: int,
) -> str:
    """Explain an ILLEGAL partition, given the deepest linearized prefix (op indices)."""
    key: Hashable | None = model.partition_key(ops[0].input) if ops else None
    where = f" (key {key!r})" if key is not None else ""
    lines = [
        f"not linearizable: partition {partition + 1} of {partitions}{where}, {len(ops)} ops",
        f"longest linearizable prefix: {len(prefix)} of {len(ops)} ops"
        + (f", the last {_SHOW_PREFIX}:" if len(prefix) > _SHOW_PREFIX else ":"),
    ]
    state = model.init()
    for n, i in enumerate(prefix):
        _, state = model.step(state, ops[i].input, ops[i].output)
        if n >= len(prefix) - _SHOW_PREFIX:
            after = model.describe_state(state)
            lines.append(f"  {n + 1}. {_op_line(model, ops, i)}  => {after}")
    lines.append(f"state after the prefix: {model.describe_state(state)}")
    done = set(prefix)
    rest = [i for i in range(len(ops)) if i not in done]
    if not rest:  # cannot happen for a truly illegal partition; be defensive
        return "\n".join(lines)
    stuck = min(rest, key=lambda i: (ops[i].ret, i))
    legal, _ = model.step(state, ops[stuck].input, ops[stuck].output)
    why = "illegal in this state" if not legal else "every order leads to a dead end"
    lines.append(f"cannot linearize: {_op_line(model, ops, stuck)}  ({why})")
    others = [i for i in rest if i != stuck and ops[i].call <= ops[stuck].ret]
    if others:
        lines.append(f"concurrent ops that could go before it ({len(others)}):")
        lines.extend(f"  {_op_line(model, ops, i)}" for i in others[:_SHOW_PENDING])
        if len(others) > _SHOW_PENDING:
            lines.append(f"  ... and {len(others) - _SHOW_PENDING} more")
    return "\n".join(lines)
