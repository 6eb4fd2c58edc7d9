"""Replicate a plain class: @replicated methods change state, @query methods read it.

    class Counter(Replicated):
        value: int                     # annotated public attributes = the replicated state

        def __init__(self) -> None:
            self.value = 0

        @replicated
        def add(self, n: int = 1) -> int:
            self.value += n
            return self.value

        @query
        def get(self) -> int:
            return self.value

    counter = Counter()
    async with Node(counter, node_id=..., peers=..., data_dir=...):
        await counter.add(5)           # proposes Call("add", {n: 5}); returns the applied result
        await counter.get()            # linearizable read, run on the local replica

Calling a @replicated method does not run it: it encodes the arguments (msgspec msgpack, typed
by the method's annotations, checked before anything is proposed), proposes the call, and
returns what the method returned when the committed call was applied, decoded by the return
annotation. Every replica runs the method body once per committed call.

The log stores the method's name: renaming a method (or changing its arguments incompatibly)
breaks replaying an existing log; pass @replicated(name="old_name") to keep the old name.
Snapshots encode the annotated public attributes; every public instance attribute must be
annotated on the class, so no state escapes snapshots.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Concatenate, Generic, ParamSpec, TypeVar, overload

import msgspec

from raftkv.embed.codec import Decoder, encode
from raftkv.embed.errors import EncodeError, NotAttached
from raftkv.errors import BadRequest

if TYPE_CHECKING:
    from raftkv.embed.node import Node

S = TypeVar("S", bound="Replicated")
P = ParamSpec("P")
R = TypeVar("R")

_ENCODER = msgspec.msgpack.Encoder()


class Call(msgspec.Struct, frozen=True, array_like=True):
    """The command a @replicated call puts into the log."""

    method: str
    args: msgspec.Raw


@dataclass(frozen=True, slots=True)
class _Signature:
    signature: inspect.Signature
    args_type: type[msgspec.Struct]
    args: msgspec.msgpack.Decoder[Any]
    result: Decoder[Any]
    positional: tuple[str, ...]  # positional-only parameters (passed by position on apply)
    keywords: tuple[str, ...]


class _Method(Generic[S, P, R]):
    """What @replicated and @query share: the wrapped function and its typed signature."""

    def __init__(self, fn: Callable[Concatenate[S, P], R], name: str | None) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        self.__doc__ = fn.__doc__
        self._sig: _Signature | None = None

    @property
    def qualname(self) -> str:
        return self.fn.__qualname__

    def signature(self) -> _Signature:
        if self._sig is None:
            self._sig = _build_signature(self.fn)
        return self._sig


class ReplicatedMethod(_Method[S, P, R]):
    @overload
    def __get__(self, obj: None, owner: type[Any]) -> ReplicatedMethod[S, P, R]: ...

    @overload
    def __get__(self, obj: S, owner: type[Any]) -> BoundReplicated[P, R]: ...

    def __get__(
        self, obj: S | None, owner: type[Any]
    ) -> ReplicatedMethod[S, P, R] | BoundReplicated[P, R]:
        if obj is None:
            return self
        return BoundReplicated(self, obj)

    def encode_call(self, obj: Replicated, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        """The command for obj.method(*args, **kwargs); EncodeError / BadRequest if the
        arguments cannot be encoded or do not match the annotations (nothing is proposed)."""
        sig = self.signature()
        try:
            bound = sig.signature.bind(obj, *args, **kwargs)
        except TypeError as e:
            raise BadRequest(f"{self.qualname}(): {e}") from None
        values = dict(bound.arguments)
        values.pop(next(iter(sig.signature.parameters)))
        for key, value in values.items():
            encode(value, f"argument {key!r} of {self.qualname}()")  # names the culprit
        payload = encode(sig.args_type(**values), f"the arguments of {self.qualname}()")
        try:
            sig.args.decode(payload)
        except msgspec.ValidationError as e:
            raise BadRequest(f"{self.qualname}(): an argument does not fit its type: {e}") from None
        return _ENCODER.encode(Call(self.name, msgspec.Raw(payload)))

    def run(self, obj: S, raw: bytes) -> R:
        """Apply a committed call (on every replica)."""
        sig = self.signature()
        args = sig.args.decode(raw)
        positional = [getattr(args, name) for name in sig.positional]
        keywords = {name: getattr(args, name) for name in sig.keywords}
        return self.fn(obj, *positional, **keywords)

    async def propose(self, node: Node[Any], command: bytes) -> R:
        outcome, index = await node.submit(command)
        result: R = node.result(outcome, index, self.signature().result)
        return result


class BoundReplicated(Generic[P, R]):
    """obj.method: calling it proposes the call and returns an awaitable of its result."""

    def __init__(self, method: ReplicatedMethod[Any, P, R], obj: Replicated) -> None:
        self._method = method
        self._obj = obj

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        node = self._obj._raftkv_node_for(self._method.qualname)
        command = self._method.encode_call(self._obj, args, kwargs)
        return self._method.propose(node, command)


class QueryMethod(_Method[S, P, R]):
    @overload
    def __get__(self, obj: None, owner: type[Any]) -> QueryMethod[S, P, R]: ...

    @overload
    def __get__(self, obj: S, owner: type[Any]) -> BoundQuery[P, R]: ...

    def __get__(self, obj: S | None, owner: type[Any]) -> QueryMethod[S, P, R] | BoundQuery[P, R]:
        if obj is None:
            return self
        return BoundQuery(self, obj)


class BoundQuery(Generic[P, R]):
    """obj.query(...): a linearizable read on the local replica; .local(...) reads without
    waiting (possibly stale), synchronously."""

    def __init__(self, method: QueryMethod[Any, P, R], obj: Replicated) -> None:
        self._method = method
        self._obj = obj

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        node = self._obj._raftkv_node_for(self._method.qualname)
        fn, obj = self._method.fn, self._obj
        return node.read(lambda _: fn(obj, *args, **kwargs))

    def local(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._method.fn(self._obj, *args, **kwargs)


@overload
def replicated(fn: Callable[Concatenate[S, P], R], /) -> ReplicatedMethod[S, P, R]: ...


@overload
def replicated(
    *, name: str | None = None
) -> Callable[[Callable[Concatenate[S, P], R]], ReplicatedMethod[S, P, R]]: ...


def replicated(
    fn: Callable[Concatenate[S, P], R] | None = None, /, *, name: str | None = None
) -> (
    ReplicatedMethod[S, P, R]
    | Callable[[Callable[Concatenate[S, P], R]], ReplicatedMethod[S, P, R]]
):
    """Make a method of a Replicated class a replicated command (see the module docstring)."""

    def wrap(f: Callable[Concatenate[S, P], R]) -> ReplicatedMethod[S, P, R]:
        _check_parameters(f)
        return ReplicatedMethod(f, name)

    return wrap if fn is None else wrap(fn)


def query(fn: Callable[Concatenate[S, P], R], /) -> QueryMethod[S, P, R]:
    """Make a method of a Replicated class a linearizable read (runs locally, not logged)."""
    return QueryMethod(fn, None)


class Replicated:
    """Base class of replicated objects: also a StateMachine (apply(Call), snapshot, restore).

    Override on_node_start / on_node_stop to run background work with the node (the lock
    manager's session reaper does). Do not call replicated methods from inside one. Reserved
    names: apply, snapshot, restore, on_node_start, on_node_stop, attached_node, _raftkv*."""

    if TYPE_CHECKING:
        _raftkv_node: Node[Any] | None
        _raftkv_applying: bool
        _raftkv_methods: ClassVar[dict[str, ReplicatedMethod[Any, Any, Any]]]
        _raftkv_state: ClassVar[tuple[tuple[str, ...], Decoder[Any], type[msgspec.Struct]] | None]
    else:
        _raftkv_node = None
        _raftkv_applying = False
        _raftkv_methods = {}
        _raftkv_state = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        methods: dict[str, ReplicatedMethod[Any, Any, Any]] = {}
        for base in reversed(cls.__mro__):
            for attr in vars(base).values():
                if isinstance(attr, ReplicatedMethod):
                    other = methods.get(attr.name)
                    if other is not None and other.fn.__name__ != attr.fn.__name__:
                        raise TypeError(
                            f"two replicated methods of {cls.__name__} are named {attr.name!r}"
                        )
                    methods[attr.name] = attr
        cls._raftkv_methods = methods
        cls._raftkv_state = None

    # --- StateMachine ---------------------------------------------------------------------

    def apply(self, command: Call) -> Any:
        method = self._raftkv_methods.get(command.method)
        if method is None:
            raise BadRequest(f"{type(self).__name__} has no replicated method {command.method!r}")
        self._raftkv_applying = True
        try:
            return method.run(self, bytes(command.args))
        finally:
            self._raftkv_applying = False

    def snapshot(self) -> bytes:
        fields, _, state_type = self._raftkv_state_schema()
        state = state_type(**{name: getattr(self, name) for name in fields})
        return encode(state, f"the state of {type(self).__name__}")

    def restore(self, data: bytes) -> None:
        fields, decoder, _ = self._raftkv_state_schema()
        state = decoder.decode(data)
        for name in fields:
            setattr(self, name, getattr(state, name))

    # --- lifecycle hooks ------------------------------------------------------------------

    async def on_node_start(self, node: Node[Any]) -> None:
        """Called once the node replicating this object has started."""

    async def on_node_stop(self, node: Node[Any]) -> None:
        """Called when the node starts shutting down (it still runs)."""

    @property
    def attached_node(self) -> Node[Any]:
        """The Node replicating this object (NotAttached if none)."""
        return self._raftkv_node_for(type(self).__name__)

    # --- internals ------------------------------------------------------------------------

    def _raftkv_attach(self, node: Node[Any]) -> None:
        if self._raftkv_node is not None and self._raftkv_node is not node:
            raise BadRequest(f"this {type(self).__name__} is already replicated by another node")
        fields, _, _ = self._raftkv_state_schema()
        declared = set(fields)
        stray = sorted(k for k in vars(self) if not k.startswith("_") and k not in declared)
        if stray:
            raise BadRequest(
                f"{type(self).__name__} has undeclared attributes {stray}: annotate them on the "
                "class (they are replicated state and must be in snapshots), or prefix them _"
            )
        missing = [name for name in fields if not hasattr(self, name)]
        if missing:
            raise BadRequest(f"{type(self).__name__} never sets its state fields {missing}")
        self.snapshot()  # fails now, clearly, if the state cannot be encoded
        self._raftkv_node = node

    def _raftkv_node_for(self, what: str) -> Node[Any]:
        if self._raftkv_applying:
            raise NotAttached(
                f"{what} called while applying a command: call a plain helper method instead"
            )
        node = self._raftkv_node
        if node is None:
            raise NotAttached(f"{what}: no Node replicates this {type(self).__name__}")
        return node

    @classmethod
    def _raftkv_state_schema(cls) -> tuple[tuple[str, ...], Decoder[Any], type[msgspec.Struct]]:
        if cls._raftkv_state is None:
            try:
                hints = typing.get_type_hints(cls)
            except NameError as e:
                raise BadRequest(f"{cls.__name__}: cannot resolve an annotation: {e}") from None
            fields = [
                (name, tp)
                for name, tp in hints.items()
                if not name.startswith("_") and typing.get_origin(tp) is not ClassVar
            ]
            try:
                state_type = msgspec.defstruct(f"{cls.__name__}State", fields)
                decoder: Decoder[Any] = Decoder(state_type, f"a {cls.__name__} snapshot")
            except TypeError as e:
                raise BadRequest(f"the state of {cls.__name__} is not encodable: {e}") from None
            cls._raftkv_state = (tuple(name for name, _ in fields), decoder, state_type)
        return cls._raftkv_state


def _check_parameters(fn: Callable[..., Any]) -> None:
    for p in list(inspect.signature(fn).parameters.values())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(f"{fn.__qualname__}: *args and **kwargs cannot be replicated")


def _build_signature(fn: Callable[..., Any]) -> _Signature:
    sig = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn)
    except NameError as e:
        raise BadRequest(f"{fn.__qualname__}: cannot resolve an annotation: {e}") from None
    params = list(sig.parameters.values())[1:]
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for p in params:
        tp = hints.get(p.name, Any)
        fields.append((p.name, tp) if p.default is p.empty else (p.name, tp, p.default))
    try:
        args_type = msgspec.defstruct(
            f"{fn.__qualname__}.args", fields, kw_only=True, forbid_unknown_fields=True
        )
        args = msgspec.msgpack.Decoder(args_type)
        result: Decoder[Any] = Decoder(hints.get("return", Any), f"the result of {fn.__qualname__}")
    except TypeError as e:
        raise EncodeError(f"{fn.__qualname__}: a type msgspec cannot encode: {e}") from None
    return _Signature(
        signature=sig,
        args_type=args_type,
        args=args,
        result=result,
        positional=tuple(p.name for p in params if p.kind is p.POSITIONAL_ONLY),
        keywords=tuple(p.name for p in params if p.kind is not p.POSITIONAL_ONLY),
    )
