"""Step semantics of the ready-made models, one table per model."""

from __future__ import annotations

from typing import Any

import pytest

from raftkv.check.history import UNKNOWN_OUTPUT, Operation
from raftkv.check.model import Model, partition_by_key
from raftkv.check.models import (
    AppendOp,
    EtcdRegisterModel,
    KvAppendInput,
    KvAppendModel,
    KvInput,
    KvOp,
    KvRegisterModel,
    RegisterInput,
    RegisterOp,
)

U = UNKNOWN_OUTPUT
READ = RegisterInput(RegisterOp.READ)


def _write(v: int) -> RegisterInput:
    return RegisterInput(RegisterOp.WRITE, v)


def _cas(a: int, b: int) -> RegisterInput:
    return RegisterInput(RegisterOp.CAS, value=b, expected=a)


@pytest.mark.parametrize(
    ("state", "inp", "output", "legal", "after"),
    [
        (None, READ, None, True, None),
        (None, READ, 0, False, None),
        (3, READ, 3, True, 3),
        (3, READ, None, False, 3),
        (3, READ, U, True, 3),
        (None, _write(1), None, True, 1),
        (2, _write(1), U, True, 1),
        (1, _cas(1, 2), True, True, 2),
        (None, _cas(1, 2), True, False, 2),
        (1, _cas(1, 2), False, False, 1),
        (0, _cas(1, 2), False, True, 0),
        (None, _cas(1, 2), False, True, None),
        (1, _cas(1, 2), U, True, 2),
        (0, _cas(1, 2), U, True, 0),
    ],
)
def test_etcd_register_model(
    state: int | None, inp: RegisterInput, output: object, legal: bool, after: int | None
) -> None:
    model = EtcdRegisterModel()
    assert model.init() is None
    ok, new = model.step(state, inp, output)
    assert ok is legal
    if legal:
        assert new == after


@pytest.mark.parametrize(
    ("state", "inp", "output", "legal", "after"),
    [
        ("", KvAppendInput(AppendOp.GET, "k"), "", True, ""),
        ("", KvAppendInput(AppendOp.GET, "k"), "x", False, ""),
        ("ab", KvAppendInput(AppendOp.GET, "k"), U, True, "ab"),
        ("ab", KvAppendInput(AppendOp.PUT, "k", "c"), None, True, "c"),
        ("ab", KvAppendInput(AppendOp.APPEND, "k", "c"), None, True, "abc"),
        ("ab", KvAppendInput(AppendOp.APPEND, "k", "c"), U, True, "abc"),
    ],
)
def test_kv_append_model(
    state: str, inp: KvAppendInput, output: object, legal: bool, after: str
) -> None:
    model = KvAppendModel()
    assert model.init() == ""
    assert model.step(state, inp, output) == (legal, after)


def _kv(op: str, value: str | None = None, expected: str | None = None) -> KvInput:
    return KvInput(op, "k", value, expected)


@pytest.mark.parametrize(
    ("state", "inp", "output", "legal", "after"),
    [
        (None, _kv("get"), None, True, None),
        (None, _kv("get"), "a", False, None),
        ("a", _kv("get"), "a", True, "a"),
        ("a", _kv("get"), None, False, "a"),
        ("a", _kv("get"), U, True, "a"),
        (None, _kv("put", "a"), None, True, "a"),
        ("b", _kv("put", "a"), U, True, "a"),
        ("a", _kv("delete"), None, True, None),
        ("a", _kv("delete"), U, True, None),
        ("a", _kv("cas", "b", "a"), True, True, "b"),
        ("x", _kv("cas", "b", "a"), True, False, "b"),
        ("x", _kv("cas", "b", "a"), False, True, "x"),
        ("a", _kv("cas", "b", "a"), False, False, "a"),
        (None, _kv("cas", "b", None), True, True, "b"),
        ("a", _kv("cas", "b", None), True, False, "b"),
        ("a", _kv("cas", "b", None), False, True, "a"),
        ("a", _kv("cas", "b", "a"), U, True, "b"),
        ("x", _kv("cas", "b", "a"), U, True, "x"),
        ("a", _kv("cas", "b", "a"), "yes", False, "a"),
    ],
)
def test_kv_register_model(
    state: str | None, inp: KvInput, output: object, legal: bool, after: str | None
) -> None:
    model = KvRegisterModel()
    assert model.init() is None
    ok, new = model.step(state, inp, output)
    assert ok is legal
    if legal:
        assert new == after


def test_kv_input_accepts_enum_or_string_and_rejects_unknown_ops() -> None:
    assert KvInput(KvOp.PUT, "k", "v") == KvInput("put", "k", "v")
    assert hash(KvInput(KvOp.GET, "k")) == hash(KvInput("get", "k"))
    with pytest.raises(ValueError, match="unknown op"):
        KvInput("increment", "k")


def test_kv_models_partition_by_key_in_first_appearance_order() -> None:
    ops = [
        Operation(0, KvInput("put", "b", "1"), None, 0, 1),
        Operation(0, KvInput("get", "a"), None, 2, 3),
        Operation(1, KvInput("get", "b"), "1", 4, 5),
    ]
    parts = KvRegisterModel().partition(ops)
    assert parts == [[ops[0], ops[2]], [ops[1]]]
    assert KvRegisterModel().partition([]) == []


def test_register_model_is_one_partition() -> None:
    ops = [Operation(0, READ, None, 0, 1), Operation(1, _write(2), None, 0, 1)]
    assert EtcdRegisterModel().partition(ops) == [ops]


def test_a_key_of_none_keeps_the_history_whole() -> None:
    ops = [Operation(0, "a", None, 0, 1), Operation(0, "*", None, 2, 3)]
    parts = partition_by_key(ops, lambda inp: None if inp == "*" else inp)
    assert parts == [ops]


def test_models_satisfy_the_protocol() -> None:
    models: list[Model[Any]] = [EtcdRegisterModel(), KvAppendModel(), KvRegisterModel()]
    assert all(isinstance(m.describe_state(m.init()), str) for m in models)


@pytest.mark.parametrize(
    ("model", "inp", "output", "text"),
    [
        (EtcdRegisterModel(), READ, None, "read() -> nil"),
        (EtcdRegisterModel(), _write(3), U, "write(3) -> ?"),
        (EtcdRegisterModel(), _cas(1, 2), False, "cas(1 -> 2) -> fail"),
        (KvAppendModel(), KvAppendInput(AppendOp.APPEND, "k", "x"), None, "append('k', 'x')"),
        (KvAppendModel(), KvAppendInput(AppendOp.GET, "k"), "x", "get('k') -> 'x'"),
        (KvRegisterModel(), _kv("get"), None, "get('k') -> <absent>"),
        (KvRegisterModel(), _kv("put", "v"), None, "put('k', 'v')"),
        (KvRegisterModel(), _kv("delete"), U, "delete('k') -> ?"),
        (KvRegisterModel(), _kv("cas", "b", None), True, "cas('k', <absent> -> 'b') -> swapped"),
    ],
)
def test_describe_operation(model: Model[Any], inp: object, output: object, text: str) -> None:
    assert model.describe_operation(inp, output) == text
