"""Explicit msgspec (msgpack) encoding of commands, arguments and results. Never pickle.

With type Any a value decodes as msgpack builtins (a tuple comes back as a list, a dataclass
as a dict); give a concrete type (a msgspec.Struct, a dataclass, list[int], ...) to get the
same type back. Anything msgspec cannot encode raises EncodeError before it is proposed.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec

from raftkv.embed.errors import EncodeError
from raftkv.errors import BadRequest

T = TypeVar("T")

SUPPORTED = (
    "None, bool, int, float, str, bytes, list, tuple, dict, set, msgspec.Struct, "
    "dataclasses, enums, datetime, uuid, decimal"
)

_ENCODER = msgspec.msgpack.Encoder()


def encode(value: object, what: str) -> bytes:
    """Encode value; EncodeError naming `what` when msgspec cannot."""
    try:
        return _ENCODER.encode(value)
    except (TypeError, msgspec.EncodeError, OverflowError, ValueError) as e:
        raise EncodeError(
            f"cannot encode {what} (a {type(value).__name__}) with msgspec: {e}. "
            f"Supported: {SUPPORTED}"
        ) from None


class Decoder(Generic[T]):
    """Decode msgpack into type T (Any: builtins). BadRequest when the data does not fit."""

    def __init__(self, type_: Any, what: str) -> None:
        self._decoder: msgspec.msgpack.Decoder[T] = msgspec.msgpack.Decoder(type_)
        self._what = what

    def decode(self, data: bytes) -> T:
        try:
            return self._decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise BadRequest(f"cannot decode {self._what}: {e}") from None
