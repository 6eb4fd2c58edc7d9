"""When an open operation is worth taking: the moves of search.py as memoized predicates.

Open operations are grouped in classes (equal inputs; any member may stand for the class). Take
open class g from state s, reaching a, and let x follow it, reaching b. The pair is removable
when x is legal from s and either leaves b there (drop: g goes to the end instead) or is
followed there by g to reach b (swap: g goes after x); two open classes only swap into class
order, and a class never swaps with itself. A pair that is not removable is kept: x observes g.

Every answer depends only on classes, states and operation indices, never on the node, so each
is computed once per search.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from raftkv.check.history import UNKNOWN_OUTPUT
from raftkv.check.model import Model


class _Illegal:
    """The state after an open operation the model refused (a broken model contract)."""


ILLEGAL = _Illegal()
_MISSING = object()


class _Scan:
    """The classes found worth taking at one (state, window, guard), and the next to examine."""

    __slots__ = ("found", "next")

    def __init__(self) -> None:
        self.found: list[int] = []
        self.next = 0


class OpenRules:
    """Memoized moves for the open classes of one partition (class ids are small ints, in
    the order kept when two of them commute)."""

    __slots__ = (
        "_after",
        "_classes",
        "_effects_from",
        "_followers",
        "_inputs",
        "_op_inputs",
        "_op_outputs",
        "_scans",
        "_seen_definite",
        "_seen_open",
        "_step",
    )

    def __init__(
        self,
        model: Model[Any],
        class_inputs: dict[int, object],
        inputs: Sequence[object],
        outputs: Sequence[object],
    ) -> None:
        """class_inputs: class id -> its input; inputs, outputs: every operation's, by index."""
        self._step = model.step
        self._op_inputs = inputs
        self._op_outputs = outputs
        self._inputs = class_inputs
        self._classes = sorted(class_inputs)
        self._after: dict[tuple[int, Any], Any] = {}
        self._seen_definite: dict[tuple[int, Any, int], bool] = {}
        self._seen_open: dict[tuple[int, Any, int], bool] = {}
        self._followers: dict[tuple[int, Any], bool] = {}
        self._effects_from: dict[Any, frozenset[tuple[int, Any]]] = {}
        self._scans: dict[tuple[Any, tuple[int, ...], tuple[int, Any] | None], _Scan] = {}

    def after(self, g: int, s: Any) -> Any:
        """The state after class g from s (ILLEGAL if the model refuses it)."""
        key = (g, s)
        a = self._after.get(key, _MISSING)
        if a is _MISSING:
            legal, a = self._step(s, self._inputs[g], UNKNOWN_OUTPUT)
            a = a if legal else ILLEGAL
            self._after[key] = a
        return a

    def worth(self, g: int, s: Any, window: Sequence[int], guard: tuple[int, Any] | None) -> Any:
        """The state after class g from s if it is worth taking there, else ILLEGAL: it changes
        the state, observes the guard (the open class on top of the stack and the state before
        it) if any, and a definite candidate in the window or some open class may observe it."""
        a = self._after.get((g, s), _MISSING)
        if a is _MISSING:
            a = self.after(g, s)
        if a is ILLEGAL or a == s:
            return ILLEGAL
        if guard is not None and not self.seen_by_open(guard[0], guard[1], g):
            return ILLEGAL
        seen = self._seen_definite
        for i in window:
            observed = seen.get((g, s, i))
            if observed is None:
                observed = self.seen_by_definite(g, s, i)
            if observed:
                return a
        return a if self.has_follower(g, s) else ILLEGAL

    def nth_worth(
        self, s: Any, window: tuple[int, ...], guard: tuple[int, Any] | None, j: int
    ) -> int | None:
        """The j-th class (in class order) worth taking from s before this window under this
        guard, or None if there are no more. Each (s, window, guard) is scanned once, lazily."""
        scan = self._scans.get((s, window, guard))
        if scan is None:
            scan = self._scans[s, window, guard] = _Scan()
        found, classes = scan.found, self._classes
        while j >= len(found) and scan.next < len(classes):
            g = classes[scan.next]
            scan.next += 1
            if self.worth(g, s, window, guard) is not ILLEGAL:
                found.append(g)
        return found[j] if j < len(found) else None

    def index_of(
        self, s: Any, window: tuple[int, ...], guard: tuple[int, Any] | None, g: int
    ) -> int:
        """The position of class g among those nth_worth gave for (s, window, guard)."""
        return self._scans[s, window, guard].found.index(g)

    def seen_by_definite(self, g: int, s: Any, i: int) -> bool:
        """Definite operation i right after class g taken from s: legal there, and observes g."""
        key = (g, s, i)
        seen = self._seen_definite.get(key)
        if seen is None:
            inp, out = self._op_inputs[i], self._op_outputs[i]
            seen = self._observes(g, s, lambda state: self._step(state, inp, out), swap=True)
            self._seen_definite[key] = seen
        return seen

    def seen_by_open(self, g: int, s: Any, h: int) -> bool:
        """Open class h right after class g taken from s: changes the state, and observes g."""
        key = (g, s, h)
        seen = self._seen_open.get(key)
        if seen is None:
            a = self.after(g, s)
            b = self.after(h, a)
            if b is ILLEGAL or b == a:
                seen = False
            else:
                seen = self._observes(g, s, lambda state: _legal(self.after(h, state)), swap=h < g)
            self._seen_open[key] = seen
        return seen

    def has_follower(self, g: int, s: Any) -> bool:
        """Could some open class follow class g taken from s (observe it)?"""
        key = (g, s)
        found = self._followers.get(key)
        if found is None:
            a = self.after(g, s)
            # Only a class whose effect from a is not its effect from s can observe g.
            changed = () if a is ILLEGAL else self._effects(a) - self._effects(s)
            found = any(self.seen_by_open(g, s, h) for h, _ in changed)
            self._followers[key] = found
        return found

    def _effects(self, x: Any) -> frozenset[tuple[int, Any]]:
        """(class, state after it) for every class that changes state x."""
        effects = self._effects_from.get(x)
        if effects is None:
            after = ((h, self.after(h, x)) for h in self._classes)
            effects = frozenset((h, y) for h, y in after if y is ILLEGAL or y != x)
            self._effects_from[x] = effects
        return effects

    def _observes(
        self, g: int, s: Any, x: Callable[[Any], tuple[bool, Any]], *, swap: bool
    ) -> bool:
        """x maps a state to (legal, next state). True iff x is legal after g and neither drop
        nor (if allowed) swap removes the pair."""
        a = self.after(g, s)
        if a is ILLEGAL:
            return False
        legal, b = x(a)
        if not legal:
            return False
        legal, s_x = x(s)
        if not legal:
            return True  # x needs g
        if s_x == b:
            return False  # drop
        if not swap:
            return True
        s_xg = self.after(g, s_x)
        return s_xg is ILLEGAL or s_xg != b


def _legal(state: Any) -> tuple[bool, Any]:
    return state is not ILLEGAL, state
