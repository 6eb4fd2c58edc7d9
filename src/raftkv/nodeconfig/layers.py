"""Where each setting of `raftkv serve` comes from: flag > environment > TOML file > default.

Invariants:
- Every RAFTKV_* environment variable is either a setting (RAFTKV_DATA_DIR ...), the config
  file's path (RAFTKV_CONFIG), or one of the clients' variables (RAFTKV_ENDPOINTS ...), which
  serve ignores; anything else is an error, as is an unknown key in the file: a typo never
  passes silently.
- An error names the setting and its source (the file and the key, or the variable) and says
  what is wrong; all of them are reported at once.
- A relative path in the file is relative to the file's directory.
"""

from __future__ import annotations

import difflib
import enum
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raftkv.client.credentials import (
    CACERT_ENV,
    CLIENT_CERT_ENV,
    CLIENT_KEY_ENV,
    TOKEN_ENV,
    TOKEN_FILE_ENV,
)
from raftkv.client.endpoints import ENV_VAR as ENDPOINTS_ENV
from raftkv.errors import BadRequest
from raftkv.nodeconfig.kinds import FilePath
from raftkv.nodeconfig.options import BY_NAME, ENV_PREFIX, OPTIONS, Option, ServeConfig

CONFIG_ENV = ENV_PREFIX + "CONFIG"
CLIENT_ENV = frozenset(
    {ENDPOINTS_ENV, TOKEN_ENV, TOKEN_FILE_ENV, CACERT_ENV, CLIENT_CERT_ENV, CLIENT_KEY_ENV}
)
_BY_ENV = {o.env: o for o in OPTIONS if not o.meta.hidden}
_BY_KEY = {o.key: o for o in OPTIONS if not o.meta.hidden}


class ConfigError(BadRequest):
    """A setting is unknown, has a bad value, or is missing; the message says which and where."""


class Source(enum.Enum):
    FLAG = "flag"
    ENV = "env"
    FILE = "file"
    DEFAULT = "default"


@dataclass(frozen=True, slots=True)
class Origin:
    source: Source
    where: str = ""  # the flag, the variable, or the file

    def __str__(self) -> str:
        return f"{self.source.value} {self.where}".rstrip()


@dataclass(frozen=True, slots=True)
class Layers:
    """Each setting's value and origin; missing: required settings no layer gave."""

    values: Mapping[str, Any]
    origins: Mapping[str, Origin]
    missing: tuple[str, ...]
    config_file: Path | None

    def config(self) -> ServeConfig:
        """The ServeConfig, or ConfigError naming every missing required setting."""
        if self.missing:
            needed = "; ".join(
                f"{o.name} ({o.flag}, {o.env} or {o.key} in the config file)"
                for o in OPTIONS
                if o.name in self.missing
            )
            raise ConfigError(f"missing required setting(s): {needed}")
        return ServeConfig(**self.values)


def config_path(flag: Path | None, env: Mapping[str, str]) -> Path | None:
    """The config file: --config, else $RAFTKV_CONFIG, else none."""
    if flag is not None:
        return flag
    text = env.get(CONFIG_ENV, "").strip()
    return Path(text) if text else None


def resolve(flags: Mapping[str, Any], env: Mapping[str, str], config_file: Path | None) -> Layers:
    """flags: the settings given on the command line (name -> the text given, or a bool for
    a boolean flag), checked here like the other layers' values."""
    errors: list[str] = []
    from_flags = read_flags(flags, errors)
    from_file = read_file(config_file, errors) if config_file is not None else {}
    from_env = read_env(env, errors)
    if errors:
        many = "bad configuration:\n  " + "\n  ".join(errors)
        raise ConfigError(errors[0] if len(errors) == 1 else many)
    values: dict[str, Any] = {}
    origins: dict[str, Origin] = {}
    missing: list[str] = []
    for opt in OPTIONS:
        if opt.name in from_flags:
            value = from_flags[opt.name]
            values[opt.name], origins[opt.name] = value, Origin(Source.FLAG, opt.flag)
        elif opt.name in from_env:
            values[opt.name], origins[opt.name] = from_env[opt.name], Origin(Source.ENV, opt.env)
        elif opt.name in from_file:
            where = str(config_file)
            values[opt.name], origins[opt.name] = from_file[opt.name], Origin(Source.FILE, where)
        elif opt.required:
            missing.append(opt.name)
        else:
            values[opt.name], origins[opt.name] = opt.default, Origin(Source.DEFAULT)
    return Layers(values, origins, tuple(missing), config_file)


def read_flags(flags: Mapping[str, Any], errors: list[str]) -> dict[str, Any]:
    """The settings given as flags; a problem is appended to errors."""
    out: dict[str, Any] = {}
    for name, given in flags.items():
        opt = BY_NAME[name]
        if not isinstance(given, str):  # a boolean flag: argparse made it a bool
            out[name] = given
            continue
        try:
            out[name] = opt.kind.from_text(given)
        except ValueError as e:
            errors.append(f"{opt.name} ({opt.flag}) {e}")
    return out


def read_env(env: Mapping[str, str], errors: list[str]) -> dict[str, Any]:
    """The settings in RAFTKV_* variables; a problem is appended to errors."""
    out: dict[str, Any] = {}
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX) or var in CLIENT_ENV or var == CONFIG_ENV:
            continue
        opt = _BY_ENV.get(var)
        if opt is None:
            hint = _did_you_mean(var, _BY_ENV)
            errors.append(
                f"unknown environment variable {var}{hint}: the setting --some-name is "
                "RAFTKV_SOME_NAME (raftkv serve --help lists them)"
            )
            continue
        try:
            out[opt.name] = opt.kind.from_text(env[var])
        except ValueError as e:
            errors.append(f"{var}={env[var]!r}: {e}")
    return out


def read_file(path: Path, errors: list[str]) -> dict[str, Any]:
    """The settings in a TOML file; a problem is appended to errors."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as e:
        errors.append(f"cannot read the config file {path}: {e.strerror or e}")
        return {}
    except tomllib.TOMLDecodeError as e:
        errors.append(f"{path}: not valid TOML: {e}")
        return {}
    out: dict[str, Any] = {}
    for key, raw in doc.items():
        opt = _BY_KEY.get(key)
        if opt is None:
            table = " (a table: every setting is a top-level key)" if isinstance(raw, dict) else ""
            errors.append(f"{path}: unknown key {key!r}{_did_you_mean(key, _BY_KEY)}{table}")
            continue
        try:
            value = raw
            if isinstance(raw, str) and raw.strip() and isinstance(opt.kind, FilePath):
                value = str(path.absolute().parent / raw)  # an absolute path stays as it is
            out[opt.name] = opt.kind.from_toml(value)
        except ValueError as e:
            errors.append(f"{path}: {key}: {e}")
    return out


def _did_you_mean(name: str, known: Mapping[str, Option]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    if not close and "-" in name:  # a flag's spelling in the file: data-dir for data_dir
        close = [k for k in known if k == name.replace("-", "_")]
    return f" (did you mean {close[0]}?)" if close else ""


def render(layers: Layers) -> str:
    """The settings as TOML (usable as a config file), each line saying where it came from."""
    rows: list[tuple[str, str]] = []
    for opt in OPTIONS:
        if opt.name in layers.missing:
            rows.append(
                (f"# {opt.key} = ?", f"MISSING (required: {opt.flag}, {opt.env} or the file)")
            )
            continue
        value, origin = layers.values[opt.name], layers.origins[opt.name]
        if opt.meta.hidden:
            if origin.source is not Source.DEFAULT:
                line = f"# {opt.key} = {opt.kind.to_toml(value)}"
                rows.append((line, f"{origin} (tests only: not a file setting)"))
            continue
        if value is None:
            rows.append((f"# {opt.key} = (unset)", str(origin)))
        else:
            rows.append((f"{opt.key} = {opt.kind.to_toml(value)}", str(origin)))
    width = min(48, max(len(line) for line, _ in rows))
    head = [
        "# raftkv serve: the settings in effect and where each came from",
        "# (flag > env RAFTKV_* > config file > default)",
    ]
    if layers.config_file is not None:
        head.append(f"# config file: {layers.config_file}")
    return "\n".join(head + [f"{line.ljust(width)}  # {why}" for line, why in rows])
