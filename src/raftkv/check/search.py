"""Wing & Gong search with Lowe's just-in-time linearization and memoization, for one partition.

Two kinds of operation. An open one (it never returned: ret = inf, output UNKNOWN_OUTPUT) may
take effect at any point after its call, or never; every other one is definite and must be
linearized between its call and its return.

The definite operations form a doubly linked list of call and return entries in time order
(calls before returns at equal times). From a node the search tries, in order: each definite
call before the first return in the list (Lowe's candidates), then, class by class, the open
operations worth taking that were called by that return. A legal step to a node not covered by
one already explored is pushed (a definite call and its return are lifted out of the list) and
the search restarts from the head; when the candidates run out it backtracks. The history is
linearizable when the list empties (the open operations left go at the end, where an unknown
output is always legal), and not linearizable when a backtrack finds the stack empty.

Open operations are placed only where something observes them. In any linearization, let open o,
taken from state s, be directly followed by x. If x is legal from s and leaves the same state
with or without o before it, o can go to the end instead (x hid it); if x then o leaves the same
state as o then x, they can swap (x did not see o), which moves o later when x is definite and
orders them by class when x is open too. Open operations with equal inputs (a class) are
interchangeable, so they can be taken in call order. None of these moves changes another
operation's state or breaks real-time order, and they cannot go on for ever, so a history is
linearizable iff it has a linearization none of them applies to. The search only builds those:
it takes an open operation only if it changes the state, observes the open operation before it
if any, and a definite candidate or some open class could observe it (open_ops.OpenRules), and
never before an earlier-called member of its class; after an open operation it skips every
definite step a move would remove. Those skips depend on the last step when it was open: (its
class, the state before it) is part of the cache key.

Nodes are (definite set, state, guard) plus the set of open operations taken. A node is covered
by an explored one with the same definite set and state, the same guard or none, and a subset of
the open operations: whatever the larger set can still do, the smaller one can too, with
earlier-called members of the same classes.

Which open classes are worth taking depends only on (state, definite candidates, guard): each
such triple is examined once (OpenRules.nth_worth). A step is a definite candidate tried, an
open operation taken, or a backtrack; open operations passed over cost none. The search is
resumable: run(budget) does at most `budget` steps and returns None if it has not decided yet,
so a driver can interleave many partitions.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from typing import Any

from raftkv.check.history import UNKNOWN_OUTPUT, Operation
from raftkv.check.model import Model
from raftkv.check.open_ops import OpenRules


class SearchVerdict(enum.Enum):
    OK = "ok"
    ILLEGAL = "illegal"


def _is_open(op: Operation) -> bool:
    """Never returned, nothing observed: may take effect at any point after its call, or never."""
    return op.is_open and op.output is UNKNOWN_OUTPUT


def _covers(seen: list[int], obits: int) -> bool:
    """Does one of the explored open sets `seen` lie within obits?"""
    return any(not other & ~obits for other in seen)


class Search:
    """The search state of one partition. Entry 0 is the head, the last entry the tail sentinel.

    Open operations are numbered k = 0, 1, ... in call order; a class is named by its first k.
    Stack frames are (code, state before, entry): code >= 1 is the call entry of a definite
    operation; code < 0 is -(k + 1) for open operation k, with the list's first return when it
    was taken.
    """

    __slots__ = (
        "_bits",
        "_cache",
        "_entry",
        "_inputs",
        "_is_call",
        "_members",
        "_model",
        "_next",
        "_next_open",
        "_obits",
        "_op_of",
        "_open_call",
        "_open_op",
        "_outputs",
        "_prev",
        "_rank",
        "_ret_of",
        "_rules",
        "_stack",
        "_state",
        "_tail",
        "_time",
        "best_prefix",
        "ops",
        "steps",
        "verdict",
    )

    def __init__(self, ops: Sequence[Operation], model: Model[Any]) -> None:
        self.ops = list(ops)
        self._model = model
        definite = [i for i, op in enumerate(self.ops) if not _is_open(op)]
        # Sort key (time, 0 = call / 1 = return, op index): calls first at equal times.
        events = sorted(
            [(self.ops[i].call, 0, i) for i in definite]
            + [(self.ops[i].ret, 1, i) for i in definite]
        )
        size = 2 * len(definite) + 2
        self._tail = size - 1
        self._next = list(range(1, size + 1))
        self._prev = list(range(-1, size - 1))
        self._op_of = [-1] * size
        self._is_call = [False] * size
        self._ret_of = [0] * size  # call entry -> its return entry
        self._time = [math.inf] * size
        call_entry = [0] * len(self.ops)
        for entry, (time, kind, i) in enumerate(events, start=1):
            self._op_of[entry] = i
            self._time[entry] = time
            if kind == 0:
                self._is_call[entry] = True
                call_entry[i] = entry
            else:
                self._ret_of[call_entry[i]] = entry
        opens = [i for i, op in enumerate(self.ops) if _is_open(op)]
        self._open_op = sorted(opens, key=lambda i: (self.ops[i].call, i))  # k -> op index
        self._open_call = [self.ops[i].call for i in self._open_op]
        # A class is the open operations with one input, taken in call order; its id (rank)
        # is its first k, and members lists its k's.
        self._rank: list[int] = []
        self._members: dict[int, list[int]] = {}
        first: dict[object, int] = {}
        for k, i in enumerate(self._open_op):
            g = first.setdefault(self.ops[i].input, k)
            self._rank.append(g)
            self._members.setdefault(g, []).append(k)
        self._inputs = [op.input for op in self.ops]
        self._outputs = [op.output for op in self.ops]
        classes = {g: self.ops[self._open_op[g]].input for g in self._members}
        self._rules = OpenRules(model, classes, self._inputs, self._outputs)
        self._entry = self._next[0]
        self._next_open = -1  # -1: walking the list at _entry; else the next worth class (j)
        self._state: Any = model.init()
        self._bits = 0  # bit i set <=> definite ops[i] is linearized
        self._obits = 0  # bit k set <=> open operation k is linearized
        self._stack: list[tuple[int, Any, int]] = []
        # (definite bits, state, guard) -> the open sets explored there, none a subset of another
        self._cache: dict[tuple[Any, ...], list[int]] = {}
        self.best_prefix: list[int] = []  # op indices of the deepest linearization reached
        self.steps = 0
        self.verdict: SearchVerdict | None = None

    def run(self, budget: int) -> SearchVerdict | None:
        """Search for at most `budget` more steps; the verdict, or None if still undecided."""
        if self.verdict is not None:
            return self.verdict
        nxt, prv, is_call, op_of, ret_of, time = (
            self._next,
            self._prev,
            self._is_call,
            self._op_of,
            self._ret_of,
            self._time,
        )
        first_open_call = self._open_call[0] if self._open_call else math.inf
        inputs, outputs, stack = self._inputs, self._outputs, self._stack
        step = self._model.step
        tail = self._tail
        entry, j, state = self._entry, self._next_open, self._state
        bits, obits = self._bits, self._obits
        best = len(self.best_prefix)
        steps = 0
        verdict: SearchVerdict | None = None
        while nxt[0] != tail:
            if steps >= budget:
                break
            steps += 1
            if j < 0 and is_call[entry]:  # a definite candidate
                i = op_of[entry]
                legal, new_state = step(state, inputs[i], outputs[i])
                if legal and (not stack or stack[-1][0] > 0 or self._seen(i)):
                    new_bits = bits | (1 << i)
                    if self._visit((new_bits, new_state, None), None, obits):
                        stack.append((entry, state, 0))
                        if len(stack) > best:
                            best = len(stack)
                            self.best_prefix = self._prefix()
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
                continue
            # entry is the list's first return: the open operations called by then.
            taken = -1
            if first_open_call <= time[entry]:
                j, taken, new_state = self._next_open_worth(max(j, 0), state, entry, bits, obits)
            if taken >= 0:
                stack.append((-(taken + 1), state, entry))
                if len(stack) > best:
                    best = len(stack)
                    self.best_prefix = self._prefix()
                state, obits = new_state, obits | (1 << taken)
                entry, j = nxt[0], -1
                continue
            # No candidate left: backtrack.
            if not stack:
                verdict = SearchVerdict.ILLEGAL
                break
            code, state, r = stack.pop()
            if code < 0:
                obits ^= 1 << (-code - 1)
                entry, j = r, self._resume_after(-code - 1, state, r)
                continue
            entry, j = code, -1
            bits ^= 1 << op_of[entry]
            r = ret_of[entry]
            nxt[prv[r]] = r
            prv[nxt[r]] = r
            nxt[prv[entry]] = entry
            prv[nxt[entry]] = entry
            entry = nxt[entry]
        else:
            verdict = SearchVerdict.OK
        self._entry, self._next_open, self._state = entry, j, state
        self._bits, self._obits = bits, obits
        self.steps += steps
        self.verdict = verdict
        if verdict is SearchVerdict.OK:
            self._check_open_tail()
        if verdict is not None:
            self._cache = {}  # decided: free the memory early
        return verdict

    def _visit(self, key: tuple[Any, ...], unguarded: tuple[Any, ...] | None, obits: int) -> bool:
        """False if an explored node covers (key, obits) (or (unguarded, obits)); else record it
        and return True."""
        cache = self._cache
        seen = cache.get(key)
        if seen is not None and _covers(seen, obits):
            return False
        if unguarded is not None and (other := cache.get(unguarded)) and _covers(other, obits):
            return False
        if seen is None:
            cache[key] = [obits]
        else:
            seen[:] = [s for s in seen if obits & ~s]  # drop the supersets it now covers
            seen.append(obits)
        return True

    def _next_open_worth(
        self, j: int, state: Any, first_return: int, bits: int, obits: int
    ) -> tuple[int, int, Any]:
        """From the j-th class worth taking here (OpenRules.nth_worth) on, the first whose next
        member not taken yet was called by the first return and leads to an uncovered node:
        (j, that member's k, the state after it), or (j, -1, None) if none."""
        rules, call = self._rules, self._open_call
        bound = self._time[first_return]
        window, guard = tuple(self._window(first_return)), self._guard()
        while (g := rules.nth_worth(state, window, guard, j)) is not None:
            k = next((m for m in self._members[g] if not obits >> m & 1), -1)
            if k >= 0 and call[k] <= bound:
                after = rules.after(g, state)
                if self._visit((bits, after, (g, state)), (bits, after, None), obits | (1 << k)):
                    return j, k, after
            j += 1
        return j, -1, None

    def _resume_after(self, k: int, state: Any, first_return: int) -> int:
        """Open operation k was just backtracked: the position of the next class to try."""
        window, guard = tuple(self._window(first_return)), self._guard()
        return self._rules.index_of(state, window, guard, self._rank[k]) + 1

    def _seen(self, i: int) -> bool:
        """The top of the stack is open: does definite ops[i], legal next, observe it?"""
        code, s, _ = self._stack[-1]
        return self._rules.seen_by_definite(self._rank[-code - 1], s, i)

    def _window(self, first_return: int) -> list[int]:
        """The definite candidates: the ops whose calls precede the list's first return."""
        window = []
        entry = self._next[0]
        while entry != first_return:
            window.append(self._op_of[entry])
            entry = self._next[entry]
        return window

    def _guard(self) -> tuple[int, Any] | None:
        """(class, state before it) of the open operation on top of the stack, if any."""
        if self._stack and self._stack[-1][0] < 0:
            code, state, _ = self._stack[-1]
            return self._rank[-code - 1], state
        return None

    def _prefix(self) -> list[int]:
        return [self._op_of[c] if c > 0 else self._open_op[-c - 1] for c, _, _ in self._stack]

    def _open_tail(self) -> list[int]:
        """The open operations not linearized, in call order."""
        return [i for k, i in enumerate(self._open_op) if not self._obits >> k & 1]

    def _check_open_tail(self) -> None:
        """The open operations left go at the end: the model must accept them there."""
        state = self._state
        for i in self._open_tail():
            legal, state = self._model.step(state, self._inputs[i], self._outputs[i])
            if not legal:
                raise ValueError(
                    f"the model rejects an unknown output ({self.ops[i]}); "
                    "step(state, input, UNKNOWN_OUTPUT) must be legal in every state"
                )

    def linearization(self) -> list[int]:
        """After OK: op indices in a legal linearization order (open operations included)."""
        return self._prefix() + self._open_tail()
