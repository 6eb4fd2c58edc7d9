"""Wing & Gong search with Lowe's just-in-time linearization and memoization, for one partition.

The history is a doubly linked list of call and return entries in time order (calls before
returns at equal times). Walking from the head: at a call, try to linearize that operation
now; if the model accepts it and (linearized set, new state) was never seen, push, lift the
call and its return out of the list, and restart from the head. Reaching a return means that
operation should already have been linearized: backtrack. The history is linearizable when
the list empties, and not linearizable when a backtrack finds the stack empty.

The search is resumable: run(budget) does at most `budget` steps and returns None if it has
not decided yet, so a driver can interleave many partitions.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

from raftkv.check.history import Operation
from raftkv.check.model import Model


class SearchVerdict(enum.Enum):
    OK = "ok"
    ILLEGAL = "illegal"


class Search:
    """The search state of one partition. Entry 0 is the head, entry 2n+1 the tail sentinel."""

    __slots__ = (
        "_bits",
        "_cache",
        "_entry",
        "_inputs",
        "_is_call",
        "_model",
        "_next",
        "_op_of",
        "_outputs",
        "_prev",
        "_ret_of",
        "_stack",
        "_state",
        "_tail",
        "best_prefix",
        "ops",
        "steps",
        "verdict",
    )

    def __init__(self, ops: Sequence[Operation], model: Model[Any]) -> None:
        self.ops = list(ops)
        self._model = model
        n = len(self.ops)
        # Sort key (time, 0 = call / 1 = return, op index): calls first at equal times.
        events = sorted(
            [(op.call, 0, i) for i, op in enumerate(self.ops)]
            + [(op.ret, 1, i) for i, op in enumerate(self.ops)]
        )
        size = 2 * n + 2
        self._tail = size - 1
        self._next = list(range(1, size + 1))
        self._prev = list(range(-1, size - 1))
        self._op_of = [-1] * size
        self._is_call = [False] * size
        self._ret_of = [0] * size  # call entry -> its return entry
        call_entry = [0] * n
        for entry, (_, kind, i) in enumerate(events, start=1):
            self._op_of[entry] = i
            if kind == 0:
                self._is_call[entry] = True
                call_entry[i] = entry
            else:
                self._ret_of[call_entry[i]] = entry
        self._inputs = [op.input for op in self.ops]
        self._outputs = [op.output for op in self.ops]
        self._entry = self._next[0]
        self._state: Any = model.init()
        self._bits = 0  # bit i set <=> ops[i] is linearized (on the stack)
        self._stack: list[tuple[int, Any]] = []  # (call entry, state before it)
        self._cache: set[tuple[int, Any]] = set()  # (bits, state) pairs already explored
        self.best_prefix: list[int] = []  # op indices of the deepest linearization reached
        self.steps = 0
        self.verdict: SearchVerdict | None = None

    def run(self, budget: int) -> SearchVerdict | None:
        """Search for at most `budget` more steps; the verdict, or None if still undecided."""
        if self.verdict is not None:
            return self.verdict
        nxt, prv, is_call, op_of, ret_of = (
            self._next,
            self._prev,
            self._is_call,
            self._op_of,
            self._ret_of,
        )
        inputs, outputs, stack, cache = self._inputs, self._outputs, self._stack, self._cache
        step = self._model.step
        tail = self._tail
        entry, state, bits = self._entry, self._state, self._bits
        best = len(self.best_prefix)
        steps = 0
        verdict: SearchVerdict | None = None
        while nxt[0] != tail:
            if steps >= budget:
                break
            steps += 1
            if is_call[entry]:
                i = op_of[entry]
                legal, new_state = step(state, inputs[i], outputs[i])
                if legal:
                    new_bits = bits | (1 << i)
                    key = (new_bits, new_state)
                    if key not in cache:
                        cache.add(key)
                        stack.append((entry, state))
                        if len(stack) > best:
                            best = len(stack)
                            self.best_prefix = [op_of[e] for e, _ in stack]
                        state, bits = new_state, new_bits
                        # Lift the call, then its return (unlift restores in reverse order).
                        p, q = prv[entry], nxt[entry]
                        nxt[p], prv[q] = q, p
                        r = ret_of[entry]
                        p, q = prv[r], nxt[r]
                        nxt[p], prv[q] = q, p
                        entry = nxt[0]
                        continue
                # The list always ends with a return, so nxt[entry] is never the tail here.
                entry = nxt[entry]
            else:
                if not stack:
                    verdict = SearchVerdict.ILLEGAL
                    break
                entry, state = stack.pop()
                bits ^= 1 << op_of[entry]
                r = ret_of[entry]
                nxt[prv[r]] = r
                prv[nxt[r]] = r
                nxt[prv[entry]] = entry
                prv[nxt[entry]] = entry
                entry = nxt[entry]
        else:
            verdict = SearchVerdict.OK
        self._entry, self._state, self._bits = entry, state, bits
        self.steps += steps
        self.verdict = verdict
        if verdict is not None:
            self._cache = set()  # decided: free the memory early
        return verdict

    def linearization(self) -> list[int]:
        """After OK: op indices in a legal linearization order."""
        return [self._op_of[e] for e, _ in self._stack]
