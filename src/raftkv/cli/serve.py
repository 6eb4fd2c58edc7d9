"""`raftkv serve`: run one node. Its settings (raftkv.nodeconfig) come from flags, RAFTKV_*
environment variables and a TOML file (--config), in that order of precedence."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from raftkv.cli.common import Subparsers, UsageError
from raftkv.errors import BadRequest
from raftkv.nodeconfig import (
    OPTIONS,
    Layers,
    Option,
    config_path,
    node_settings,
    resolve,
)
from raftkv.nodeconfig.kinds import Bool
from raftkv.nodeconfig.layers import CONFIG_ENV, render
from raftkv.nodeconfig.options import Group

DESCRIPTION = """\
Run one raftkv node until SIGTERM or Ctrl-C. Logs go to stderr.

Every setting below can also come from the environment (RAFTKV_ and the setting's name:
--data-dir is RAFTKV_DATA_DIR) or from a TOML file (--config FILE, or $RAFTKV_CONFIG; the
key is the name with underscores: data_dir = "/var/lib/raftkv"). A flag beats the
environment, which beats the file, which beats the default. --print-config shows the result
and where each value came from. --id, --data-dir, --listen and --http are required (from
any of them).
"""


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "serve",
        help="run one node in the foreground",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help=f"read settings from this TOML file (default: ${CONFIG_ENV})",
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the settings in effect (as TOML, each with its source: flag, env, file "
        "or default), check them, and exit without starting",
    )
    groups: dict[Group, Any] = {Group.NODE: p}
    for opt in OPTIONS:
        group = groups.get(opt.meta.group)
        if group is None:
            group = groups[opt.meta.group] = p.add_argument_group(opt.meta.group.value)
        _add_option(group, opt)
    p.set_defaults(func=cmd_serve)


def _add_option(group: Any, opt: Option) -> None:
    """One setting as a flag; an absent flag leaves no attribute (the other layers decide)."""
    if opt.meta.hidden:
        help_text = argparse.SUPPRESS
    elif opt.required:
        help_text = opt.meta.help + " (required)"
    elif opt.default in (None, ()):
        help_text = opt.meta.help
    else:
        help_text = f"{opt.meta.help} (default: {opt.kind.to_text(opt.default)})"
    if isinstance(opt.kind, Bool):
        group.add_argument(
            opt.flag,
            dest=opt.name,
            action=argparse.BooleanOptionalAction,
            default=argparse.SUPPRESS,
            help=help_text,
        )
        return
    # The text as given: resolve() checks it like a value from the environment or the file.
    group.add_argument(
        opt.flag, dest=opt.name, default=argparse.SUPPRESS, metavar=opt.meta.metavar, help=help_text
    )


def layers_of(args: argparse.Namespace, env: dict[str, str] | None = None) -> Layers:
    """The settings from args' flags, the environment and the config file."""
    env = dict(os.environ) if env is None else env
    flags = {o.name: getattr(args, o.name) for o in OPTIONS if hasattr(args, o.name)}
    try:
        return resolve(flags, env, config_path(args.config, env))
    except BadRequest as e:
        raise UsageError(str(e)) from None


def cmd_serve(args: argparse.Namespace) -> int:
    layers = layers_of(args)
    if args.print_config:
        print(render(layers), flush=True)
    try:
        cfg = layers.config()
        settings = node_settings(cfg)
    except BadRequest as e:
        raise UsageError(str(e)) from None
    if args.print_config:
        return 0
    from raftkv.runtime.server import run  # noqa: PLC0415 (the server is not needed elsewhere)

    if cfg.join:
        from raftkv.client import parse_endpoints  # noqa: PLC0415
        from raftkv.runtime.join import prepare_join  # noqa: PLC0415

        prepare_join(settings, parse_endpoints(cfg.join), args.timeout)
    run(settings)
    return 0
