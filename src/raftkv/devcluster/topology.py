"""The layout of a local dev cluster: node ids, ports, and DIR/cluster.json that records them.

Port scheme, with base port P (default 7001): node nI (I = 1..N) takes Raft port P+I-1 and
HTTP port P+1000+I-1. The defaults are Raft 7001.., HTTP 8001.. (the demo's 8080 stays free
below 80 nodes). A restart reads cluster.json, so the same nodes come back on the same ports.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raftkv.errors import BadRequest
from raftkv.storage import fsutil

HOST = "127.0.0.1"
DEFAULT_DATA_DIR = "raftkv-data"  # `cluster up` and the clients look here by default
DEFAULT_BASE_PORT = 7001
HTTP_OFFSET = 1000
MAX_NODES = 9  # a dev cluster on one machine; Raft gains nothing from more voters
TOPOLOGY_FILE = "cluster.json"
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class NodeSpec:
    id: str
    raft_port: int
    http_port: int
    host: str = HOST
    joined: bool = False  # added by `cluster join` (starts with --join, not --peers)

    @property
    def raft_address(self) -> str:
        return f"{self.host}:{self.raft_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def peer_spec(self) -> str:
        """This node in `raftkv serve --peers` form: ID=HOST:PORT@http://HOST:PORT."""
        return f"{self.id}={self.raft_address}@{self.http_url}"


@dataclass(frozen=True, slots=True)
class Topology:
    cluster_id: str
    base_port: int
    nodes: tuple[NodeSpec, ...]
    allow_fault_injection: bool = False
    snapshot_entries: int | None = None  # passed to every node as --snapshot-entries
    retired: tuple[str, ...] = ()  # ids removed by `cluster remove`: never used again
    wal_segment_mb: int | None = None  # passed to every node as --wal-segment-mb

    @classmethod
    def create(cls, nodes: int, base_port: int, allow_fault_injection: bool) -> Topology:
        if not 1 <= nodes <= MAX_NODES:
            raise BadRequest(f"--nodes must be in 1..{MAX_NODES}, got {nodes}")
        if not base_port >= 1024 or base_port + HTTP_OFFSET + nodes - 1 > 65535:
            raise BadRequest(
                f"--base-port {base_port} is out of range: the ports {base_port}.."
                f"{base_port + HTTP_OFFSET + nodes - 1} must lie in 1024..65535"
            )
        specs = tuple(
            NodeSpec(f"n{i}", base_port + i - 1, base_port + HTTP_OFFSET + i - 1)
            for i in range(1, nodes + 1)
        )
        return cls(f"dev-{secrets.token_hex(4)}", base_port, specs, allow_fault_injection)

    @property
    def peers_spec(self) -> str:
        """The founding members (`raftkv serve --peers`); joined nodes come later."""
        return ",".join(n.peer_spec for n in self.nodes if not n.joined)

    def with_joined(self) -> tuple[Topology, NodeSpec]:
        """This topology plus one new node nI (I = the highest index so far + 1)."""
        ids = [n.id for n in self.nodes] + list(self.retired)
        index = 1 + max((int(i[1:]) for i in ids if i[1:].isdigit()), default=0)
        if index > MAX_NODES:
            raise BadRequest(f"a dev cluster has at most {MAX_NODES} nodes (n1..n{MAX_NODES})")
        node = NodeSpec(
            f"n{index}",
            self.base_port + index - 1,
            self.base_port + HTTP_OFFSET + index - 1,
            joined=True,
        )
        return dataclasses.replace(self, nodes=(*self.nodes, node)), node

    def without(self, node_id: str) -> Topology:
        """This topology after node_id left the cluster (its id is not given out again)."""
        if node_id not in {n.id for n in self.nodes}:
            raise BadRequest(f"{node_id} is not a node of this dev cluster")
        nodes = tuple(n for n in self.nodes if n.id != node_id)
        return dataclasses.replace(self, nodes=nodes, retired=(*self.retired, node_id))

    @property
    def endpoints(self) -> list[str]:
        return [n.http_url for n in self.nodes]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "cluster_id": self.cluster_id,
            "base_port": self.base_port,
            "allow_fault_injection": self.allow_fault_injection,
            "snapshot_entries": self.snapshot_entries,
            "wal_segment_mb": self.wal_segment_mb,
            "retired": list(self.retired),
            "nodes": [
                {
                    "id": n.id,
                    "raft": n.raft_address,
                    "http": n.http_url,
                    "host": n.host,
                    "joined": n.joined,
                }
                for n in self.nodes
            ],
        }

    @classmethod
    def from_json(cls, doc: Any, where: Path) -> Topology:
        try:
            if doc["version"] != FORMAT_VERSION:
                raise BadRequest(f"{where}: unsupported format version {doc['version']}")
            nodes = tuple(
                NodeSpec(
                    str(n["id"]),
                    int(n["raft"].rpartition(":")[2]),
                    int(n["http"].rpartition(":")[2]),
                    str(n.get("host", HOST)),
                    bool(n.get("joined", False)),
                )
                for n in doc["nodes"]
            )
            return cls(
                str(doc["cluster_id"]),
                int(doc["base_port"]),
                nodes,
                bool(doc.get("allow_fault_injection", False)),
                None if doc.get("snapshot_entries") is None else int(doc["snapshot_entries"]),
                tuple(str(i) for i in doc.get("retired", ())),
                None if doc.get("wal_segment_mb") is None else int(doc["wal_segment_mb"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise BadRequest(f"{where} is not a valid cluster file ({e!r})") from None


def topology_path(data_dir: Path) -> Path:
    return data_dir / TOPOLOGY_FILE


def load_topology(data_dir: Path) -> Topology | None:
    """The recorded topology of data_dir, or None when there is none yet."""
    path = topology_path(data_dir)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise BadRequest(f"cannot read {path}: {e.strerror}") from None
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise BadRequest(f"{path} is not valid JSON ({e})") from None
    return Topology.from_json(doc, path)


def save_topology(data_dir: Path, topo: Topology) -> None:
    """Write cluster.json atomically (never a half-written file), unless it already says so."""
    path = topology_path(data_dir)
    text = json.dumps(topo.to_json(), indent=2) + "\n"
    try:
        if path.exists() and path.read_text() == text:
            return  # a restart on a full disk must not fail for want of a rewrite
        fsutil.atomic_write(path, text.encode())
    except OSError as e:
        raise fsutil.write_error("dev cluster", path, e) from e
