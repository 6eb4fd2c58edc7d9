"""A local development cluster: N `raftkv serve` processes on 127.0.0.1, detached, with their
data, logs and pid files under one directory (`raftkv cluster up|down`)."""

from raftkv.devcluster.manage import ClusterError, UpOptions, down, fetch_status, up
from raftkv.devcluster.topology import (
    DEFAULT_BASE_PORT,
    HTTP_OFFSET,
    NodeSpec,
    Topology,
    load_topology,
)

__all__ = [
    "DEFAULT_BASE_PORT",
    "HTTP_OFFSET",
    "ClusterError",
    "NodeSpec",
    "Topology",
    "UpOptions",
    "down",
    "fetch_status",
    "load_topology",
    "up",
]
