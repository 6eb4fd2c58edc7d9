"""The command line (and environment) of a `raftkv serve` process started by a launcher: the
demo, `raftkv cluster up|join` and `raftkv chaos` all start their nodes through here.

Invariant: a launched node's settings are its command line. The launcher's own RAFTKV_*
serve variables (and RAFTKV_CONFIG) are not passed on, so a variable set in the user's shell
cannot change a node it did not mean to, nor stop it (an unknown variable is an error).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from raftkv.nodeconfig.kinds import Bool
from raftkv.nodeconfig.layers import CLIENT_ENV
from raftkv.nodeconfig.options import ENV_PREFIX, OPTIONS, ServeConfig


def serve_command(cfg: ServeConfig, *, extra: Sequence[str] = ()) -> list[str]:
    """[python, -m, raftkv.cli, serve, ...]: every required setting and every other one that
    differs from its default, then extra (arguments the launcher passes through as given)."""
    cmd = [sys.executable, "-m", "raftkv.cli", "serve"]
    for opt in OPTIONS:
        value = getattr(cfg, opt.name)
        if not opt.required and value == opt.default:
            continue
        if isinstance(opt.kind, Bool):
            cmd.append(opt.flag if value else "--no-" + opt.flag[2:])
        elif value is not None:
            cmd += [opt.flag, opt.kind.to_text(value)]
    return [*cmd, *extra]


def serve_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a launched node: base (default os.environ) without RAFTKV_*
    variables other than the clients' (a joining node reads its credentials there), with
    unbuffered output for its log."""
    env = dict(os.environ if base is None else base)
    for var in [v for v in env if v.startswith(ENV_PREFIX) and v not in CLIENT_ENV]:
        del env[var]
    env["PYTHONUNBUFFERED"] = "1"
    return env
