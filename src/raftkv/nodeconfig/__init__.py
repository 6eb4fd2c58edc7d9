"""The configuration of one `raftkv serve` node, defined once.

options.py  ServeConfig: every setting (kind, default, help); flags, env and TOML keys
            derive from its field names
kinds.py    how a value is read from text or TOML and written back
layers.py   flag > RAFTKV_* environment > TOML file (--config) > default; errors; the
            --print-config listing
build.py    ServeConfig -> NodeSettings (the runtime's), the only such mapping
launch.py   the `raftkv serve` command line of a node started by the demo, `cluster up`
            or `chaos`
"""

from raftkv.nodeconfig.build import node_settings
from raftkv.nodeconfig.launch import serve_command, serve_env
from raftkv.nodeconfig.layers import ConfigError, Layers, Origin, Source, config_path, resolve
from raftkv.nodeconfig.options import OPTIONS, Option, ServeConfig

__all__ = [
    "OPTIONS",
    "ConfigError",
    "Layers",
    "Option",
    "Origin",
    "ServeConfig",
    "Source",
    "config_path",
    "node_settings",
    "resolve",
    "serve_command",
    "serve_env",
]
