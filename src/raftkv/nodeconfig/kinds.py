"""How one setting's value is read from text (a flag, an environment variable) or from TOML,
and written back (a command line, a TOML line).

A kind raises ValueError with a short reason ("must be > 0, got -1"); the caller names the
setting and where the value came from.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from raftkv.errors import BadRequest

Check = Callable[[str], object]  # raises BadRequest (or ValueError) for a bad value

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})


class Kind(Protocol):
    def from_text(self, text: str) -> Any: ...
    def from_toml(self, value: object) -> Any: ...
    def to_text(self, value: Any) -> str: ...
    def to_toml(self, value: Any) -> str: ...


@dataclass(frozen=True, slots=True)
class Text:
    """A non-empty string, optionally checked (e.g. HOST:PORT, an id)."""

    check: Check | None = None

    def from_text(self, text: str) -> str:
        if not text.strip():
            raise ValueError("must not be empty")
        if self.check is not None:
            _run(self.check, text)
        return text

    def from_toml(self, value: object) -> str:
        if not isinstance(value, str):
            raise ValueError(f"must be a string, got {toml_repr(value)}")
        return self.from_text(value)

    def to_text(self, value: Any) -> str:
        return str(value)

    def to_toml(self, value: Any) -> str:
        return toml_str(str(value))


@dataclass(frozen=True, slots=True)
class FilePath:
    """A file or directory path, made absolute (relative to the working directory; in a TOML
    file, relative to the file's directory)."""

    def from_text(self, text: str) -> Path:
        if not text.strip():
            raise ValueError("must not be empty")
        return Path(text).absolute()

    def from_toml(self, value: object) -> Path:
        if not isinstance(value, str):
            raise ValueError(f"must be a string (a path), got {toml_repr(value)}")
        return self.from_text(value)

    def to_text(self, value: Any) -> str:
        return str(value)

    def to_toml(self, value: Any) -> str:
        return toml_str(str(value))


@dataclass(frozen=True, slots=True)
class Int:
    """An integer in lo..hi (hi None: no upper bound); unit, if any, is named in messages."""

    lo: int
    hi: int | None = None
    unit: str = ""

    def from_text(self, text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not an integer") from None
        return self._checked(value)

    def from_toml(self, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be an integer, got {toml_repr(value)}")
        return self._checked(value)

    def _checked(self, value: int) -> int:
        if self.hi is None and value < self.lo:
            raise ValueError(f"must be >= {self.lo}, got {value}")
        if self.hi is not None and not self.lo <= value <= self.hi:
            unit = f" ({self.unit})" if self.unit else ""
            raise ValueError(f"must be in {self.lo}..{self.hi}{unit}, got {value}")
        return value

    def to_text(self, value: Any) -> str:
        return str(value)

    def to_toml(self, value: Any) -> str:
        return str(value)


@dataclass(frozen=True, slots=True)
class Float:
    """A finite number: in lo..hi when either is given, else > 0."""

    lo: float | None = None
    hi: float | None = None

    def from_text(self, text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        return self._checked(value)

    def from_toml(self, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"must be a number, got {toml_repr(value)}")
        return self._checked(float(value))

    def _checked(self, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {value}")
        if self.lo is None and self.hi is None:
            if not value > 0:
                raise ValueError(f"must be > 0, got {value:g}")
            return value
        if self.hi is None and self.lo is not None and value < self.lo:
            raise ValueError(f"must be >= {self.lo:g}, got {value:g}")
        if self.lo is None and self.hi is not None and value > self.hi:
            raise ValueError(f"must be <= {self.hi:g}, got {value:g}")
        if self.lo is not None and self.hi is not None and not self.lo <= value <= self.hi:
            raise ValueError(f"must be in {self.lo:g}..{self.hi:g}, got {value:g}")
        return value

    def to_text(self, value: Any) -> str:
        return repr(float(value))

    def to_toml(self, value: Any) -> str:
        return repr(float(value))


@dataclass(frozen=True, slots=True)
class Bool:
    """true/false; as text also 1/0, yes/no, on/off (any case)."""

    def from_text(self, text: str) -> bool:
        word = text.strip().lower()
        if word in TRUE:
            return True
        if word in FALSE:
            return False
        raise ValueError(f"{text!r} is not a boolean (use true or false)")

    def from_toml(self, value: object) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"must be true or false, got {toml_repr(value)}")
        return value

    def to_text(self, value: Any) -> str:
        return "true" if value else "false"

    def to_toml(self, value: Any) -> str:
        return "true" if value else "false"


@dataclass(frozen=True, slots=True)
class ListOf:
    """A list of checked strings: comma-separated as text, an array of strings in TOML."""

    check: Check

    def from_text(self, text: str) -> tuple[str, ...]:
        items = tuple(item.strip() for item in text.split(",") if item.strip())
        for item in items:
            _run(self.check, item)
        return items

    def from_toml(self, value: object) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(
                f'must be an array of strings, e.g. ["a", "b"], got {toml_repr(value)}'
            )
        items = tuple(v.strip() for v in value if v.strip())
        for item in items:
            _run(self.check, item)
        return items

    def to_text(self, value: Any) -> str:
        return ",".join(value)

    def to_toml(self, value: Any) -> str:
        return "[" + ", ".join(toml_str(v) for v in value) + "]"


def _run(check: Check, text: str) -> None:
    try:
        check(text)
    except BadRequest as e:
        raise ValueError(str(e)) from None


def toml_str(text: str) -> str:
    """A TOML basic string (JSON's string escapes are valid TOML)."""
    return json.dumps(text)


def toml_repr(value: object) -> str:
    """A value as a TOML (or environment) user wrote it, for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return toml_str(value)
    if isinstance(value, dict):
        return "a table"
    return repr(value)
